"""Fine-tuning from an exported classifier: the converted module starts where the ONNX model is, and exports back."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx2torch")

from facemask.core.classifier import DEFAULT_MODEL, MaskClassifier  # noqa: E402
from training.onnx_export import export_onnx  # noqa: E402
from training.onnx_init import SERVED_FLOAT32, allow_export_of_converted_modules, trainable_module  # noqa: E402

pytestmark = pytest.mark.slow  # minutes: torch and an ONNX export


def test_new_class_starts_undecided_and_old_classes_keep_their_odds(tmp_path):
    old = MaskClassifier(SERVED_FLOAT32)
    classes = sorted({*old.classes, "incorrect"})
    assert MaskClassifier(DEFAULT_MODEL).classes == old.classes  # the served int8 model and its float32 source
    with pytest.raises(ValueError, match="float32 source"):  # int8 does not convert back to a trainable module
        trainable_module(DEFAULT_MODEL, classes)
    module = trainable_module(SERVED_FLOAT32, classes).eval()
    batch = np.random.default_rng(0).normal(size=(4, 3, 96, 96)).astype(np.float32)
    with torch.no_grad():
        new = torch.softmax(module(torch.from_numpy(batch)), dim=1).numpy()
    reference = old.session.run(None, {old.input_name: batch})[0]
    first, second = (classes.index(name) for name in old.classes[:2])
    # Same two logits as before: the ratio of their probabilities is unchanged.
    np.testing.assert_allclose(new[:, first] / new[:, second], reference[:, 0] / reference[:, 1], rtol=1e-3)
    assert [p.requires_grad for n, p in module.named_parameters() if "initializers" in n] == [True, True]

    allow_export_of_converted_modules()
    learner = SimpleNamespace(model=module, dls=SimpleNamespace(vocab=classes))
    export_onnx(learner, tmp_path / "model.onnx", arch="resnet18")
    served = MaskClassifier(tmp_path / "model.onnx")
    assert served.classes == classes
    np.testing.assert_allclose(served.session.run(None, {served.input_name: batch})[0], new, atol=1e-4)
    metadata = {p.key: p.value for p in onnx.load(str(tmp_path / "model.onnx")).metadata_props}
    assert json.loads(metadata["classes"]) == classes
    # A fine-tuned export is itself a starting point (a second fine-tuning round): its integer shape constants
    # stay buffers, its weights become parameters, and it starts where the export is.
    again = trainable_module(tmp_path / "model.onnx", classes).eval()
    assert all(p.is_floating_point() for p in again.parameters())
    with torch.no_grad():
        np.testing.assert_allclose(torch.softmax(again(torch.from_numpy(batch)), dim=1).numpy(), new, atol=1e-4)
