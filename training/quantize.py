"""Quantize an exported classifier to int8 with ONNX Runtime's static quantization, calibrated on training crops.

    python -m training.quantize --model runs/lite96/model.onnx --prepared data/prepared160 \\
        --out runs/lite96/model_int8.onnx

Calibration: activations' ranges from CALIBRATION_CROPS training crops (seeded sample over every source), fed
exactly as serving feeds them (facemask.core.crops.to_model_input at MaskClassifier's geometry). Weights per
channel, QDQ format, so ONNX Runtime runs int8 kernels where it has them and the file stays a plain ONNX model;
the metadata (classes, crop geometry, normalisation) is copied over, so MaskClassifier and the service load it
unchanged.

Whether the int8 model may serve is bench.classifier_int8's rule (accuracy against float32 on the valid crops, both
speeds in one run), which runs this first.
"""
from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

import numpy as np
import onnx

from facemask.core.classifier import MaskClassifier
from facemask.core.crops import reframe, to_model_input
from facemask.core.images import decode_image
from training.data import prepared_geometry, read_manifest

CALIBRATION_CROPS = 512


def calibration_batches(model: Path, prepared: Path, count: int, seed: int, batch: int = 32) -> list[np.ndarray]:
    classifier = MaskClassifier(model, served_crops=False)
    frame = read_manifest(prepared)
    paths = list(frame[frame["split"] == "train"]["path"])
    chosen = random.Random(seed).sample(paths, min(count, len(paths)))
    source = prepared_geometry(prepared)
    crops = [reframe(decode_image(Path(p)), source, classifier.geometry) for p in chosen]
    return [to_model_input(crops[i:i + batch], classifier.crop_size) for i in range(0, len(crops), batch)]


def quantize(model: Path, out: Path, batches: list[np.ndarray], calibration: str = "minmax") -> Path:
    """calibration: how activation ranges are set, "minmax" (the whole range seen) or "percentile" (99.999 % of it,
    so a few extreme activations do not coarsen every other value's step)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.feed = iter(batches)
            self.input_name = onnx.load(str(model)).graph.input[0].name

        def get_next(self):
            batch = next(self.feed, None)
            return None if batch is None else {self.input_name: batch}

    with tempfile.TemporaryDirectory() as scratch:
        prepared_model = Path(scratch) / "preprocessed.onnx"
        quant_pre_process(str(model), str(prepared_model), skip_symbolic_shape=True)
        # The softmax stays float32: quantized, the probabilities the service answers would come in steps of 1/255
        # and no longer add up to 1.
        softmax = [node.name for node in onnx.load(str(prepared_model)).graph.node if node.op_type == "Softmax"]
        quantize_static(str(prepared_model), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method={"minmax": CalibrationMethod.MinMax,
                                          "percentile": CalibrationMethod.Percentile}[calibration],
                        nodes_to_exclude=softmax)
    source, target = onnx.load(str(model)), onnx.load(str(out))
    del target.metadata_props[:]
    for prop in source.metadata_props:  # the served version names the int8 file apart from its float32 source
        value = prop.value + "-int8" if prop.key == "model_version" else prop.value
        target.metadata_props.add(key=prop.key, value=value)
    target.metadata_props.add(key="quantization", value="int8 static (ONNX Runtime QDQ, per channel), calibrated on "
                                                          f"{sum(len(b) for b in batches)} training crops, "
                                                          f"{calibration} ranges")
    onnx.save(target, str(out))
    return out


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    if not args.model.is_file():
        parser.error(f"model not found: {args.model}")
    return quantize(args.model, args.out, calibration_batches(args.model, args.prepared, args.calibration_crops,
                                                              args.seed), args.calibration)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="the float32 classifier (training.train output)")
    parser.add_argument("--prepared", type=Path, required=True, help="training.prepare output (train crops)")
    parser.add_argument("--out", type=Path, required=True, help="the int8 model to write")
    parser.add_argument("--calibration-crops", type=int, default=CALIBRATION_CROPS)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--calibration", choices=("minmax", "percentile"), default="minmax")


if __name__ == "__main__":
    main()
