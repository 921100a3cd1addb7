"""FP16 copies of both models against FP32 on the held-out test splits (issue 38: FP16 only if accuracy holds within
0.005), both on the same provider.

    python -m bench.gpu.fp16_accuracy --providers cuda,cpu     # on a GPU (bench/gpu/device_bench.sh runs it)
    python -m bench.gpu.fp16_accuracy --providers cpu --limit 20   # the same check on the CPU provider, quicker

Each test photo of the scene set and of the real-photo set (detection/model/scene_split.json, ilc_split.json; those
FACEMASK_DATASETS_DIR holds) goes through detector + classifier in one process (bench/gpu/inprocess.py), as FP32 and
as FP16 (training/fp16.py); both are scored on the annotations by bench.end_to_end.evaluate at IoU 0.5: mAP over the
scored classes, face accuracy, faces found. Each FP16 number must be within --tolerance of its FP32 number.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.common import RESULTS_DIR, Report, command_line
from bench.end_to_end import evaluate
from bench.gpu.inprocess import Models
from facemask.core.images import decode_image
from facemask.core.paths import CLASSIFIER_FLOAT32_MODEL, DETECTOR_MODEL, REAL_PHOTOS_SPLIT_FILE, SCENE_SPLIT_FILE
from facemask.core.settings import Settings, parse_providers
from training.annotations import Annotation, load_scenes
from training.fp16 import convert
from training.splits import load_split

TOLERANCE = 0.005
IOU = 0.5
MEASURES = ("map", "accuracy_main", "detected")


def test_split(dataset_dir: Path, split_file: Path, limit: int | None) -> list[Annotation]:
    """The annotated test photos of one data set that are present (the device carries a part of them)."""
    held_out = set(load_split(split_file)["test"])
    present = {path.stem for path in (dataset_dir / "images").glob("*")}
    annotations = [a for a in load_scenes(dataset_dir / "images", dataset_dir / "annotations",
                                          ) if a.image.stem in held_out] if present else []
    return annotations[:limit] if limit else annotations


def score(models: Models, annotations: list[Annotation]) -> dict:
    predictions = [models.annotate(decode_image(a.image)).faces for a in annotations]
    result = evaluate(predictions, annotations, models.classifier.classes, IOU)
    return {measure: round(float(result[measure]), 4) for measure in MEASURES}


def compare(providers: tuple[str, ...], datasets: dict[str, list[Annotation]], fp16_dir: Path,
            tolerance: float = TOLERANCE) -> list[dict]:
    """One row per data set and precision, and the FP16 - FP32 differences with whether they are within tolerance."""
    detector16, classifier16 = convert([DETECTOR_MODEL, CLASSIFIER_FLOAT32_MODEL], fp16_dir)
    fp32 = Models.load(providers, "FP32", classifier_model=CLASSIFIER_FLOAT32_MODEL)  # the int8 model has no FP16 form
    fp16 = Models.load(providers, "FP16", detector16, classifier16)
    rows = []
    for name, photos in datasets.items():
        if not photos:
            continue
        full, half = score(fp32, photos), score(fp16, photos)
        differences = {measure: round(half[measure] - full[measure], 4) for measure in MEASURES}
        rows += [{"test split": name, "photos": len(photos), "model": "FP32", **full},
                 {"test split": name, "photos": len(photos), "model": "FP16", **half},
                 {"test split": name, "photos": len(photos), "model": "FP16 - FP32", **differences,
                  "within": all(abs(d) <= tolerance for d in differences.values())}]
    return rows


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--providers", type=parse_providers, default=("cpu",), help="e.g. cuda,cpu")
    parser.add_argument("--limit", type=int, default=None, help="first N test photos of each set (quick look)")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE)
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--name", default=None)
    parser.add_argument("--card", default="", help="the GPU's name, for the report")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    datasets = {"scenes": test_split(settings.scenes_dir, SCENE_SPLIT_FILE, args.limit),
                "real photos": test_split(settings.real_photos_dir, REAL_PHOTOS_SPLIT_FILE, args.limit)}
    with tempfile.TemporaryDirectory() as folder:
        rows = compare(args.providers, datasets, Path(folder), args.tolerance)
    provider = ",".join(args.providers)
    report = Report(args.name or f"fp16_accuracy_{args.providers[0]}", f"FP16 against FP32 on the test splits "
                    f"({provider})", command_line("bench.gpu.fp16_accuracy", argv), args.out_dir,
                    providers=provider, card=args.card or "none")
    report.table(f"End to end at IoU {IOU}, FP16 within {args.tolerance} of FP32?", rows)
    report.save()
    return rows


if __name__ == "__main__":
    main()
