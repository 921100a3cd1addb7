"""int8 against float32: may the statically quantized classifier serve? Accuracy on the valid crops and both speeds
measured in one run.

    python -m bench.classifier_int8 --model runs/lite96/model.onnx --prepared data/prepared160 \\
        --out runs/lite96/model_int8.onnx --name classifier_int8

Quantizes first (training.quantize: ONNX Runtime static quantization calibrated on training crops). The rule, fixed
before looking: the int8 model may serve only if its 3-class accuracy on the valid crops (every source, and the real
photos alone) stays within MAX_ACCURACY_LOSS of float32. Both models' crops/s are measured in the same run, in
alternating rounds, through MaskClassifier (what /classify runs).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from bench.common import Report, command_line
from facemask.core.classifier import MaskClassifier
from facemask.core.crops import reframe
from facemask.core.images import decode_image
from facemask.core.paths import REPO_ROOT
from training import quantize
from training.data import prepared_geometry, read_manifest
from training.validate import labelled_metrics, measure_speed

MAX_ACCURACY_LOSS = 0.005
REAL_PHOTOS = "face-mask-ilc-2021"


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
    quantize.add_arguments(parser)
    parser.add_argument("--out-dir", type=Path, default=REPO_ROOT / "bench" / "results")
    parser.add_argument("--name", default="classifier_int8")
    args = parser.parse_args(argv)
    if not args.model.is_file():
        parser.error(f"model not found: {args.model}")
    quantize.quantize(args.model, args.out, quantize.calibration_batches(args.model, args.prepared,
                                                                         args.calibration_crops, args.seed),
                      args.calibration)
    fp32, int8 = valid_accuracy(args.model, args.prepared), valid_accuracy(args.out, args.prepared)
    speed = speeds({"float32": args.model, "int8": args.out}, fp32["crops"])
    loss = max(fp32["valid_acc3"] - int8["valid_acc3"], fp32["real_acc3"] - int8["real_acc3"])
    verdict = "may serve" if loss <= MAX_ACCURACY_LOSS else "may not serve"
    report = Report(args.name, "Classifier: int8 static quantization against float32",
                    command_line("bench.classifier_int8", argv), args.out_dir, model=str(args.model))
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
