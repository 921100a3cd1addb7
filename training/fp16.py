"""Half-precision (FP16) copies of the two ONNX models, for a GPU provider only (issue 38).

    python -m training.fp16 --out-dir runs/fp16      # detector and classifier -> *_fp16.onnx
    export FACEMASK_DETECTOR_MODEL=runs/fp16/retinaface_mnet025_masks_fp16.onnx
    export FACEMASK_MODEL=runs/fp16/mask_classifier_fp16.onnx FACEMASK_ORT_PROVIDERS=cuda,cpu

ONNX Runtime's own converter (onnxruntime.transformers.float16, in every onnxruntime wheel; it needs `onnx`) turns
the weights and the arithmetic to float16 and keeps the inputs and outputs float32 (keep_io_types), so the crops,
blobs and decoding of facemask/ stay as they are. The model's metadata (classes, crop geometry) is kept. On a CPU
provider an FP16 model is slower than FP32 (most CPU kernels are float32: ONNX Runtime casts around them); on a GPU
the convolutions run on tensor cores. bench/gpu/fp16_accuracy.py decides whether the copies are good enough: the
issue's bar is within 0.005 of FP32 on the test splits.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from facemask.core.paths import CLASSIFIER_FLOAT32_MODEL, DETECTOR_MODEL


def to_fp16(model_path: Path) -> bytes:
    """The model at model_path with float16 weights and arithmetic, float32 inputs and outputs."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    return convert_float_to_float16(onnx.load(str(model_path)), keep_io_types=True).SerializeToString()


def fp16_path(model_path: Path, out_dir: Path) -> Path:
    return out_dir / f"{model_path.stem}_fp16.onnx"


def convert(models: list[Path], out_dir: Path) -> list[Path]:
    """Each model's FP16 copy written to out_dir (made if missing); their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for model in models:
        target = fp16_path(model, out_dir)
        target.write_bytes(to_fp16(model))
        written.append(target)
    return written


def main(argv=None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--detector", type=Path, default=DETECTOR_MODEL, help="RetinaFace ONNX (default: shipped)")
    parser.add_argument("--classifier", type=Path, default=CLASSIFIER_FLOAT32_MODEL,
                        help="float32 classifier ONNX (default: the served int8 model's float32 source)")
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    written = convert([args.detector, args.classifier], args.out_dir)
    for path in written:
        print(path)
    return written


if __name__ == "__main__":
    main()
