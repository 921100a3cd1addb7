"""Export a trained fastai learner to the ONNX file the classifier service loads.

    python -m training.onnx_export --pkl runs/resnet18/model.pkl --out runs/resnet18/model.onnx

The graph ends in a softmax, so the service reads class probabilities directly; classes, crop geometry and
normalisation travel inside the file as metadata and are checked against facemask.core.crops when it is loaded.
"""
from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnx
import torch

from facemask.core.crops import MEAN, SERVED, STD, CropGeometry


class WithSoftmax(torch.nn.Module):
    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return torch.softmax(self.model(x), dim=1)


def export_onnx(learner, path: Path, arch: str, geometry: CropGeometry = SERVED, tolerance: float = 1e-4) -> dict:
    model = WithSoftmax(learner.model.eval().cpu()).eval()
    example = torch.randn(2, 3, geometry.size, geometry.size)
    torch.onnx.export(model, (example,), str(path), input_names=["input"], output_names=["probabilities"],
                      dynamic_axes={"input": {0: "batch"}, "probabilities": {0: "batch"}}, opset_version=17,
                      dynamo=False)
    proto = onnx.load(str(path))
    metadata = {
        "classes": json.dumps(list(learner.dls.vocab)), "crop_size": str(geometry.size),
        "face_fraction": str(geometry.face_fraction),
        "mean": json.dumps(MEAN), "std": json.dumps(STD), "arch": arch,
        "model_version": datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S") + f"-{arch}",
    }
    del proto.metadata_props[:]
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))

    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    check = torch.randn(8, 3, geometry.size, geometry.size)
    with torch.no_grad():
        expected = model(check).numpy()
    got = session.run(None, {"input": check.numpy()})[0]
    max_error = float(np.abs(expected - got).max())
    if max_error > tolerance:
        raise RuntimeError(f"ONNX Runtime output differs from PyTorch by {max_error:.2e} (> {tolerance})")
    print(f"exported {path} ({path.stat().st_size / 1e6:.1f} MB), max |torch - onnxruntime| = {max_error:.1e}")
    return {**metadata, "onnx_max_abs_error": max_error}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pkl", type=Path, required=True, help="fastai learner exported by training.train")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--arch", default="resnet18")
    args = parser.parse_args(argv)
    from fastai.learner import load_learner

    export_onnx(load_learner(args.pkl), args.out, args.arch)


if __name__ == "__main__":
    main()
