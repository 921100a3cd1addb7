"""Served classifier speed, a new model against the current one, measured in one run on the same machine.

    python -m bench.classifier_speed --new runs/r18_3class_ft/model.onnx --old classification/model/mask_classifier.onnx

On a shared machine absolute speeds drift from minute to minute, so the two models are measured in alternating
rounds (old, new, old, new, ...) and the ratio new / old of each round is reported with the median of the rounds.
Measured: ONNX Runtime through facemask.core.classifier.MaskClassifier (batches of 64 and of 1), and the real
/classify service (gunicorn, 2 workers, 8 crops per request) started once per model.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

from bench.common import Report, command_line
from bench.speed import classify_throughput, sample_crops
from facemask.core.classifier import DEFAULT_MODEL, MaskClassifier
from facemask.core.images import decode_image, list_images
from facemask.core.paths import REPO_ROOT, RESULTS_DIR
from facemask.serving.local_server import LocalService


def onnx_crops_per_second(classifier: MaskClassifier, crops: list, batch: int, seconds: float) -> float:
    classifier.predict(crops[:batch])  # warm-up
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for start in range(0, len(crops), batch):
            classifier.predict(crops[start:start + batch])
        done += len(crops)
    return done / (time.perf_counter() - started)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new", type=Path, required=True, help="candidate classifier ONNX")
    parser.add_argument("--old", type=Path, default=DEFAULT_MODEL, help="current classifier ONNX")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0, help="per measurement")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--name", default="classifier_speed")
    args = parser.parse_args(argv)
    for path in (args.new, args.old):
        if not path.is_file():
            raise SystemExit(f"error: model not found: {path}")

    encoded = sample_crops(list_images(REPO_ROOT / "sample-images"))
    crops = [decode_image(data) for data in encoded]
    models = {"old": args.old, "new": args.new}
    # Speed only: the crops need not be cut at each model's geometry.
    classifiers = {key: MaskClassifier(path, num_threads=1, served_crops=False) for key, path in models.items()}
    rows: list[dict[str, Any]] = []
    for batch in (64, 1):
        for round_index in range(args.rounds):
            speeds = {key: onnx_crops_per_second(classifiers[key], crops, batch, args.seconds) for key in models}
            rows.append({"measure": f"ONNX Runtime, batch {batch}", "round": round_index + 1, **speeds,
                         "new / old": speeds["new"] / speeds["old"]})
    services = {key: LocalService("classification", workers=2, env={"FACEMASK_MODEL": str(path.resolve())}).start()
                for key, path in models.items()}
    try:
        for round_index in range(args.rounds):
            speeds = {key: classify_throughput(services[key].url, encoded, 8, args.seconds) for key in models}
            rows.append({"measure": "/classify, 8 crops per request", "round": round_index + 1, **speeds,
                         "new / old": speeds["new"] / speeds["old"]})
    finally:
        for service in services.values():
            service.stop()

    report = Report(args.name, "Classifier speed: new model vs current, alternating rounds in one run",
                    command_line("bench.classifier_speed", argv),
                    out_dir=args.out_dir,
                    models={key: {"file": str(path), "version": classifiers[key].model_version,
                                  "classes": classifiers[key].classes, "bytes": path.stat().st_size}
                            for key, path in models.items()})
    report.note(f"{len(crops)} real face crops from the sample images; crops/s, one ONNX Runtime thread "
                "(ONNX rows) or the service defaults (/classify rows).")
    report.table("Crops per second, each round", rows)
    summary = [{"measure": measure, "old (median)": statistics.median(r["old"] for r in group),
                "new (median)": statistics.median(r["new"] for r in group),
                "new / old (median)": statistics.median(r["new / old"] for r in group)}
               for measure in dict.fromkeys(r["measure"] for r in rows)
               for group in [[r for r in rows if r["measure"] == measure]]]
    report.table("Summary", summary)
    report.save()
    return {"rows": rows, "summary": summary}


if __name__ == "__main__":
    main()
