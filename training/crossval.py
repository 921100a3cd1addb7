"""Choose between classifier recipes by K-fold cross-validation by photo over the train and valid photos.

    # every candidate of a round file, every fold, here (one after another; a CPU takes hours):
    python -m training.crossval run training/gpu_rounds/imagenet_cv.txt --prepared data/prepared160 --out runs/cv
    # or: write the round for a lent GPU (training/device_train.sh trains its lines at once), then score what
    # comes back here:
    python -m training.crossval round training/gpu_rounds/imagenet_cv.txt --out .gpu/cv_round.txt
    python -m training.crossval score runs/cv --prepared data/prepared160 --name classifier_crossval

A round file lists one candidate per line: a name, then training.train arguments (as training/gpu_rounds/). Each
candidate is trained once per fold with `training.train --fold K N` (training.folds: a photo's faces are all in one
fold) and scored on the crops of the fold it did not see, through the serving wrapper: 3-class accuracy on the
real-photo faces (the product's headline), worn-wrong recall and precision there, the scene faces, and the crop
set's mask vs no mask. The table gives each candidate's mean and spread (sample standard deviation) over folds.
The test split is never read.
"""
from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from facemask.core.classes import INCORRECT, WITH_MASK, WITHOUT_MASK
from facemask.core.paths import REPO_ROOT
from training.data import read_manifest
from training.folds import with_fold_split
from training.validate import labelled_metrics, predict_split

REAL_PHOTOS = "face-mask-ilc-2021"
SCENES = "face-mask-scenes-andrewmvd"
CROP_SET = "face-mask-chandrikadeb7"
FOLD_RUN = re.compile(r"^(?P<name>.+)__fold(?P<fold>\d+)of(?P<folds>\d+)$")
MEASURES = ("real_acc3", "real_incorrect_recall", "real_incorrect_precision", "real_unmasked_called_mask",
            "real_log_loss", "scene_acc3", "crop_set_two_labels")


def read_round(path: Path) -> list[tuple[str, list[str]]]:
    candidates = []
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, *arguments = shlex.split(line)
        if "__" in name:
            raise ValueError(f"{path}: candidate name {name!r} may not contain '__'")
        candidates.append((name, arguments))
    return candidates


def fold_run_name(name: str, fold: int, folds: int) -> str:
    return f"{name}__fold{fold}of{folds}"


def round_lines(candidates: list[tuple[str, list[str]]], folds: int, only_folds: list[int] | None = None) -> list[str]:
    """training/device_train.sh lines: every candidate in every fold (or in only_folds)."""
    return [f"{fold_run_name(name, fold, folds)} {' '.join(arguments)} --fold {fold} {folds}"
            for name, arguments in candidates for fold in (only_folds or range(folds))]


def held_out_predictions(model: Path, prepared: Path, fold: int, folds: int):
    """One fold model on the crops of the fold it did not see, through the serving wrapper:
    (classifier, manifest rows, crops, probabilities), as training.validate.predict_split gives for a split."""
    return predict_split(model, prepared, "valid", manifest=with_fold_split(read_manifest(prepared), fold, folds))


def fold_models(runs: Path) -> list[tuple[str, int, int, Path]]:
    """(candidate, fold, folds, model) for every `<candidate>__fold<K>of<N>` run folder's model.onnx or bare .onnx
    under runs."""
    found = []
    for model in sorted({*runs.glob("*__fold*/model.onnx"), *runs.glob("*__fold*.onnx")}):
        match = FOLD_RUN.match(model.parent.name if model.name == "model.onnx" else model.stem)
        if match:
            found.append((match["name"], int(match["fold"]), int(match["folds"]), model))
    return found


def fold_scores(model: Path, prepared: Path, fold: int, folds: int) -> dict:
    """One fold model on the held-out crops of its fold, per source."""
    classifier, frame, _, probabilities = held_out_predictions(model, prepared, fold, folds)

    def metrics(dataset: str) -> dict:
        chosen = (frame["dataset"] == dataset).to_numpy()
        return labelled_metrics(classifier.classes, list(frame["label"][chosen]), probabilities[chosen])

    real, scenes, crop_set = metrics(REAL_PHOTOS), metrics(SCENES), metrics(CROP_SET)
    matrix, classes = np.array(real["confusion_matrix"]), real["classes"]
    unmasked = matrix[classes.index(WITHOUT_MASK)]
    return {"fold": fold, "real_faces": real["images"], "real_acc3": real["accuracy"],
            "real_incorrect_recall": real["per_class"][INCORRECT]["recall"],
            "real_incorrect_precision": real["per_class"][INCORRECT]["precision"],
            "real_unmasked_called_mask": round(float(unmasked[classes.index(WITH_MASK)] / max(1, unmasked.sum())), 4),
            "real_log_loss": real["log_loss"], "scene_faces": scenes["images"], "scene_acc3": scenes["accuracy"],
            "crop_set_faces": crop_set["images"], "crop_set_two_labels": crop_set.get("two_class_accuracy"),
            "confusion_real": real["confusion_matrix"], "classes": classes}


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and spread per candidate over its folds."""
    summary = []
    for name in dict.fromkeys(row["candidate"] for row in rows):
        mine = [row for row in rows if row["candidate"] == name]
        entry: dict = {"candidate": name, "folds": len(mine)}
        for measure in MEASURES:
            values = [row[measure] for row in mine if row.get(measure) is not None]
            entry[measure] = {"mean": round(float(np.mean(values)), 4) if values else None,
                              "std": round(float(np.std(values, ddof=1)), 4) if len(values) > 1 else None}
        summary.append(entry)
    return summary


def markdown(summary: list[dict], note: str) -> str:
    def cell(value: dict) -> str:
        if value["mean"] is None:
            return "n/a"
        return f"{value['mean']:.3f}" + (f" ± {value['std']:.3f}" if value["std"] is not None else "")

    lines = [note, "", "| candidate | folds | real photos: 3-class acc | worn wrong recall | worn wrong precision | "
             "unmasked called mask | log loss | scene faces: 3-class acc | crop set: mask vs no mask |",
             "|---|---|---|---|---|---|---|---|---|"]
    for entry in summary:
        lines.append(f"| {entry['candidate']} | {entry['folds']} | "
                     + " | ".join(cell(entry[m]) for m in MEASURES) + " |")
    return "\n".join(lines) + "\n"


def score(runs: Path, prepared: Path, out_dir: Path, name: str) -> list[dict]:
    """Score every `<candidate>__fold<K>of<N>` model under runs (a run folder's model.onnx or a bare .onnx)."""
    rows = []
    for candidate, fold, folds, model in fold_models(runs):
        row = {"candidate": candidate, "model": str(model), "of_folds": folds,
               **fold_scores(model, prepared, fold, folds)}
        print(json.dumps({k: v for k, v in row.items() if not k.startswith("confusion")}), flush=True)
        rows.append(row)
    if not rows:
        raise SystemExit(f"error: no <candidate>__fold<K>of<N> models under {runs}")
    summary = summarise(rows)
    note = (f"Cross-validation by photo over the train and valid photos ({rows[0]['of_folds']} folds, "
            f"training.folds), each fold model scored on the held-out fold's serving crops, mean ± sample "
            "standard deviation over folds. The test split is not read.")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps({"summary": summary, "folds": rows}, indent=1) + "\n")
    (out_dir / f"{name}.md").write_text("# Classifier candidates by cross-validation\n\n"
                                        + markdown(summary, note))
    print(markdown(summary, note))
    return summary


def run(candidates: list[tuple[str, list[str]]], prepared: Path, out: Path, folds: int, only_folds: list[int]) -> None:
    """Train every candidate in every fold here, one after another (a run already exported is kept)."""
    for name, arguments in candidates:
        for fold in only_folds or range(folds):
            target = out / fold_run_name(name, fold, folds)
            if (target / "model.onnx").is_file():
                continue
            command = [sys.executable, "-m", "training.train", "--prepared", str(prepared.resolve()), *arguments,
                       "--fold", str(fold), str(folds), "--out", str(target.resolve())]
            started = time.time()
            target.mkdir(parents=True, exist_ok=True)
            with open(target / "train.log", "w") as log:
                finished = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
            print(f"{target.name}: exit {finished.returncode} after {(time.time() - started) / 60:.1f} min",
                  flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for command in ("run", "round"):
        sub = commands.add_parser(command)
        sub.add_argument("candidates", type=Path, help="round file: a name, then training.train arguments, a line")
        sub.add_argument("--folds", type=int, default=5)
        sub.add_argument("--out", type=Path, required=True,
                         help="run: the folder of the fold runs; round: the device round file to write")
        sub.add_argument("--only-folds", type=int, nargs="*", default=[], help="these folds only")
        if command == "run":
            sub.add_argument("--prepared", type=Path, required=True)
        else:
            sub.add_argument("--append", action="store_true", help="add to the round file instead of replacing it")
    sub = commands.add_parser("score")
    sub.add_argument("runs", type=Path, help="folder holding <candidate>__fold<K>of<N> runs or .onnx files")
    sub.add_argument("--prepared", type=Path, required=True)
    sub.add_argument("--out-dir", type=Path, default=REPO_ROOT / "bench" / "results")
    sub.add_argument("--name", default="classifier_crossval")
    args = parser.parse_args(argv)

    if args.command == "score":
        score(args.runs, args.prepared, args.out_dir, args.name)
        return
    try:
        candidates = read_round(args.candidates)
    except (OSError, ValueError) as error:
        parser.error(str(error))
    if args.command == "round":
        args.out.parent.mkdir(parents=True, exist_ok=True)
        lines = round_lines(candidates, args.folds, args.only_folds)
        before = args.out.read_text() if args.append and args.out.is_file() else ""
        args.out.write_text(before + "\n".join(lines) + "\n")
        print(f"wrote {args.out}: {len(lines)} runs")
        return
    run(candidates, args.prepared, args.out, args.folds, args.only_folds)


if __name__ == "__main__":
    main()
