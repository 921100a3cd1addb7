"""Quantize an exported classifier to int8 with ONNX Runtime's static quantization, calibrated on training crops,
and decide whether the int8 model may serve.

    python -m training.quantize --model runs/lite96/model.onnx --prepared data/prepared160 \\
        --out runs/lite96/model_int8.onnx --name classifier_int8

Calibration: activations' ranges from CALIBRATION_CROPS training crops (seeded sample over every source), fed
exactly as serving feeds them (facemask.core.crops.to_model_input through MaskClassifier's geometry). Weights per channel,
QDQ format, so ONNX Runtime runs int8 kernels where it has them and the file stays a plain ONNX model; the metadata
(classes, crop geometry, normalisation) is copied over, so MaskClassifier and the service load it unchanged.

The rule, fixed before looking: the int8 model may serve only if its 3-class accuracy on the valid crops (every
source, and the real photos alone) stays within MAX_ACCURACY_LOSS of float32. Both models' crops/s are measured in
the same run, in alternating rounds, through MaskClassifier (what /classify runs).
"""
from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path

import numpy as np
import onnx

from bench.common import Report, command_line
from facemask.core.classifier import MaskClassifier
from facemask.core.crops import reframe, to_model_input
from facemask.core.images import decode_image
from facemask.core.paths import REPO_ROOT
from training.data import prepared_geometry, read_manifest
from training.validate import labelled_metrics, measure_speed

CALIBRATION_CROPS = 512
MAX_ACCURACY_LOSS = 0.005
REAL_PHOTOS = "face-mask-ilc-2021"


def calibration_batches(model: Path, prepared: Path, count: int, seed: int, batch: int = 32) -> list[np.ndarray]:
    classifier = MaskClassifier(model, served_crops=False)
    frame = read_manifest(prepared)
    paths = list(frame[frame["split"] == "train"]["path"])
    chosen = random.Random(seed).sample(paths, min(count, len(paths)))
    source = prepared_geometry(prepared)
    crops = [reframe(decode_image(Path(p)), source, classifier.geometry) for p in chosen]
    return [to_model_input(crops[i:i + batch], classifier.crop_size) for i in range(0, len(crops), batch)]


def quantize(model: Path, out: Path, batches: list[np.ndarray]) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
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
        quantize_static(str(prepared_model), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    source, target = onnx.load(str(model)), onnx.load(str(out))
    del target.metadata_props[:]
    for prop in source.metadata_props:
        target.metadata_props.add(key=prop.key, value=prop.value)
    target.metadata_props.add(key="quantization", value="int8 static (ONNX Runtime QDQ, per channel), calibrated on "
                                                          f"{sum(len(b) for b in batches)} training crops")
    onnx.save(target, str(out))
    return out


def valid_accuracy(model: Path, prepared: Path) -> dict:
    classifier = MaskClassifier(model, served_crops=False)
    frame = read_manifest(prepared)
    frame = frame[frame["split"] == "valid"]
    source = prepared_geometry(prepared)
    crops = [reframe(decode_image(Path(p)), source, classifier.geometry) for p in frame["path"]]
    probabilities = classifier.predict(crops)
    labels = list(frame["label"])
    real = (frame["dataset"] == REAL_PHOTOS).to_numpy()
    everything = labelled_metrics(classifier.classes, labels, probabilities)
    real_photos = labelled_metrics(classifier.classes, [x for x, keep in zip(labels, real) if keep],
                                   probabilities[real])
    return {"valid_acc3": everything["accuracy"], "real_acc3": real_photos["accuracy"], "crops": crops}


def speeds(models: dict[str, Path], crops: list[np.ndarray], rounds: int = 3) -> dict[str, dict[str, float]]:
    """Median crops/s per model, rounds alternating between the models so load changes hit both alike."""
    classifiers = {name: MaskClassifier(path, served_crops=False) for name, path in models.items()}
    measured: dict[str, dict[str, list[float]]] = {name: {"batch_64": [], "batch_1": []} for name in models}
    for _ in range(rounds):
        for name, classifier in classifiers.items():
            for batch in (64, 1):
                measured[name][f"batch_{batch}"].append(measure_speed(classifier, crops, batch, repeats=1))
    return {name: {key: float(np.median(values)) for key, values in by_batch.items()}
            for name, by_batch in measured.items()}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="the float32 classifier (training.train output)")
    parser.add_argument("--prepared", type=Path, required=True, help="training.prepare output (train + valid crops)")
    parser.add_argument("--out", type=Path, required=True, help="the int8 model to write")
    parser.add_argument("--calibration-crops", type=int, default=CALIBRATION_CROPS)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out-dir", type=Path, default=REPO_ROOT / "bench" / "results")
    parser.add_argument("--name", default="classifier_int8")
    args = parser.parse_args(argv)
    if not args.model.is_file():
        parser.error(f"model not found: {args.model}")
    quantize(args.model, args.out, calibration_batches(args.model, args.prepared, args.calibration_crops, args.seed))
    fp32, int8 = valid_accuracy(args.model, args.prepared), valid_accuracy(args.out, args.prepared)
    speed = speeds({"float32": args.model, "int8": args.out}, fp32["crops"])
    loss = max(fp32["valid_acc3"] - int8["valid_acc3"], fp32["real_acc3"] - int8["real_acc3"])
    verdict = "may serve" if loss <= MAX_ACCURACY_LOSS else "may not serve"
    report = Report(args.name, "Classifier: int8 static quantization against float32",
                    command_line("training.quantize", argv), args.out_dir, model=str(args.model))
    report.note(f"Rule, fixed before looking: int8 may serve only if 3-class accuracy on the valid crops (all, and "
                f"the real photos alone) stays within {MAX_ACCURACY_LOSS} of float32. Largest loss: {loss:.4f}, so "
                f"the int8 model **{verdict}**.")
    rows = [{"model": name, "MB": round(path.stat().st_size / 1e6, 2), "valid acc3": result["valid_acc3"],
             "real-photo valid acc3": result["real_acc3"], "crops/s batch 64": speed[name]["batch_64"],
             "crops/s batch 1": speed[name]["batch_1"]}
            for name, path, result in (("float32", args.model, fp32), ("int8", args.out, int8))]
    report.table("Valid crops and speed (same run, alternating rounds, median of 3)", rows)
    report.data = {"accuracy_loss": round(loss, 4), "int8_may_serve": loss <= MAX_ACCURACY_LOSS,
                   "speed_ratio_batch_64": round(speed["int8"]["batch_64"] / speed["float32"]["batch_64"], 3),
                   "speed_ratio_batch_1": round(speed["int8"]["batch_1"] / speed["float32"]["batch_1"], 3)}
    report.save()
    print(json.dumps(report.data))
    return report.data


if __name__ == "__main__":
    main()
