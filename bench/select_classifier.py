"""Choose between classifier candidates on the **valid** splits only, by one rule fixed before looking.

    python -m bench.select_classifier runs/gpu2/*.onnx classification/model/mask_classifier.onnx \
        --prepared data/prepared_ilc --name classifier_candidates_round2

For each candidate: the whole pipeline (the service's detector, a real classification service serving the
candidate) on the valid photos of the real-photo set (IoU 0.3) and of the andrewmvd scenes (IoU 0.5), both through
bench.end_to_end, plus the candidate alone on the valid crops of each source in the prepared folder
(training.validate). The rule: the highest 3-class face accuracy on the real-photo valid photos at IoU 0.3 among the
candidates that keep the crop set's mask vs no mask at or above CLOSE_UP_BAR (no loss on close-ups). The test
splits are never read here.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.common import Report, command_line
from facemask.core.paths import REAL_PHOTOS_DIR, REPO_ROOT

CLOSE_UP_BAR = 0.984
REAL_PHOTO_SPLIT = REPO_ROOT / "detection" / "model" / "ilc_split.json"


def end_to_end_valid(model: Path, name: str, out_dir: Path, real_photos: bool) -> dict:
    from bench import end_to_end

    argv = ["--split", "valid", "--model", str(model), "--out-dir", str(out_dir), "--name", name]
    if real_photos:
        argv += ["--images", str(REAL_PHOTOS_DIR / "images"), "--annotations", str(REAL_PHOTOS_DIR / "annotations"),
                 "--split-file", str(REAL_PHOTO_SPLIT)]
    end_to_end.main(argv)
    return json.loads((out_dir / f"{name}.json").read_text())["results"]


def crop_metrics(model: Path, prepared: Path) -> dict[str, float]:
    from training.validate import evaluate

    accuracy = {}
    for dataset in ("face-mask-chandrikadeb7", "face-mask-ilc-2021", "face-mask-scenes-andrewmvd"):
        metrics, _, _ = evaluate(model, prepared, "valid", dataset, with_speed=False)
        accuracy[dataset] = metrics["two_class_accuracy" if dataset == "face-mask-chandrikadeb7" else "accuracy"]
    return accuracy


def score(model: Path, prepared: Path, out_dir: Path) -> dict:
    name = model.stem
    real = end_to_end_valid(model, f"{name}_real_photos_valid", out_dir, real_photos=True)["0.3"]
    scenes = end_to_end_valid(model, f"{name}_scenes_valid", out_dir, real_photos=False)["0.5"]
    crops = crop_metrics(model, prepared)
    return {"candidate": name, "model": str(model),
            "real_acc3": real["accuracy_main"], "real_ap_incorrect": real["ap"]["incorrect"],
            "real_incorrect_recall": real["incorrect_recall"], "real_incorrect_precision": real["incorrect_precision"],
            "real_unmasked_called_mask": real["unmasked_called_mask"],
            "scenes_map": scenes["map"], "scenes_ap_incorrect": scenes["ap"]["incorrect"],
            "crop_set_two_labels": crops["face-mask-chandrikadeb7"], "real_crops_acc": crops["face-mask-ilc-2021"],
            "scene_crops_acc": crops["face-mask-scenes-andrewmvd"]}


def choose(rows: list[dict]) -> dict | None:
    eligible = [row for row in rows if row["crop_set_two_labels"] >= CLOSE_UP_BAR]
    return max(eligible, key=lambda row: row["real_acc3"], default=None)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", type=Path, nargs="+", help="candidate classifier ONNX files")
    parser.add_argument("--prepared", type=Path, default=REPO_ROOT / "data" / "prepared_ilc",
                        help="training.prepare output holding the valid crops of every source")
    parser.add_argument("--out-dir", type=Path, default=REPO_ROOT / "bench" / "results")
    parser.add_argument("--name", default="classifier_candidates")
    args = parser.parse_args(argv)
    if missing := [str(model) for model in args.models if not model.is_file()]:
        sys.exit(f"error: candidate not found: {', '.join(missing)}")
    if not (args.prepared / "manifest.csv").is_file():
        sys.exit(f"error: {args.prepared}/manifest.csv not found: run training.prepare (see docs/classifier.md)")
    scratch = args.out_dir / "tmp" / args.name
    scratch.mkdir(parents=True, exist_ok=True)
    rows = [score(model, args.prepared, scratch) for model in args.models]
    chosen = choose(rows)

    report = Report(args.name, "Classifier candidates, chosen on valid", command_line("bench.select_classifier", argv),
                    args.out_dir)
    report.note(f"Rule, fixed before looking: the highest 3-class face accuracy on the real-photo valid photos at "
                f"IoU 0.3 among candidates keeping the crop set's mask vs no mask >= {CLOSE_UP_BAR}. Chosen: "
                f"**{chosen['candidate'] if chosen else 'none'}**.")
    report.table("Valid splits (real photos: IoU 0.3; scenes: IoU 0.5; crops: the candidate alone)", [
        {"candidate": row["candidate"], "real acc3": row["real_acc3"], "real AP worn wrong": row["real_ap_incorrect"],
         "worn wrong recall / precision": f"{row['real_incorrect_recall']:.2f} / {row['real_incorrect_precision']:.2f}",
         "unmasked called mask": row["real_unmasked_called_mask"], "scenes mAP50": row["scenes_map"],
         "scenes AP worn wrong": row["scenes_ap_incorrect"], "crop set two labels": row["crop_set_two_labels"],
         "real crops acc": row["real_crops_acc"], "scene crops acc": row["scene_crops_acc"]} for row in rows])
    report.data = {"rows": rows, "chosen": chosen["candidate"] if chosen else None}
    report.save()
    return rows


if __name__ == "__main__":
    main()
