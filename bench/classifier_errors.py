"""Where a classifier's remaining errors are: by data set and class, by face size, by sharpness, and by annotation
noise, with the crops themselves on a sheet (served crops, exactly as the service sees them).

    python -m bench.classifier_errors --prepared data/prepared160                       # the served model, valid
    python -m bench.classifier_errors --prepared data/prepared160 --model runs/lite0_96/model.onnx --name lite0
    python -m bench.classifier_errors --prepared data/prepared160 --review bench/results/classifier_errors_review.json
    # every fold model of one cross-validation candidate on the fold it did not see (training.crossval runs):
    python -m bench.classifier_errors --prepared data/prepared160 --folds runs/cv --candidate resnet18_scratch

Scored on the valid split by default: the test split is scored once per shipped model, elsewhere. With --folds, the
held-out predictions of a candidate's fold models are pooled: every train and valid crop is scored once, by the
model that did not see its photo, which gives about 4x the valid split's real-photo faces. Face size is the
detector box's width in the source photo's pixels (the box serving crops from). --review reads a person's verdict on
each real-photo error (`label wrong`: the annotation is, `unclear`: a person cannot tell from the photo either,
`model wrong`) and splits the errors by it; errors nobody reviewed stay `not reviewed`.
"""
from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np

from bench.common import RESULTS_DIR, Report, command_line
from facemask.core.classes import INCORRECT, WITH_MASK
from facemask.core.classifier import DEFAULT_MODEL
from facemask.core.paths import CROPS_FOLDER
from training.crossval import fold_models, held_out_predictions
from training.validate import predict_split

REAL_PHOTOS = ("face-mask-ilc-2021", "face-mask-scenes-andrewmvd")
NOT_REDISTRIBUTED = ("face-mask-ilc-2021",)  # no licence stated: used, never shown in a committed file
SIZE_BINS = ((0, 24), (24, 48), (48, 96), (96, 192), (192, 100_000))
VERDICTS = ("label wrong", "unclear", "model wrong")


def face_widths(boxes) -> np.ndarray:
    return np.array([(lambda b: b[2] - b[0])(json.loads(box) if isinstance(box, str) else box) for box in boxes])


def size_name(low: int, high: int) -> str:
    return f">= {low} px" if high >= 100_000 else f"{low}-{high} px"


def accuracy_rows(groups: dict[str, np.ndarray], correct: np.ndarray) -> list[dict]:
    return [{"group": name, "faces": int(mask.sum()), "errors": int((~correct[mask]).sum()),
             "accuracy": round(float(correct[mask].mean()), 4) if mask.any() else None}
            for name, mask in groups.items()]


def pooled_held_out_predictions(runs: Path, candidate: str, prepared: Path):
    """Every fold model of one candidate on the fold it did not see, pooled: (classifier, manifest rows, crops,
    probabilities), the classifier being the first fold's (all folds share its classes)."""
    import pandas as pd

    models = [(fold, folds, model) for name, fold, folds, model in fold_models(runs) if name == candidate]
    if not models:
        raise SystemExit(f"error: no {candidate}__fold<K>of<N> models under {runs}")
    parts = [held_out_predictions(model, prepared, fold, folds) for fold, folds, model in models]
    classes = {tuple(part[0].classes) for part in parts}
    if len(classes) > 1:
        raise SystemExit(f"error: the fold models of {candidate} disagree on their classes: {sorted(classes)}")
    return (parts[0][0], pd.concat([part[1] for part in parts]), [crop for part in parts for crop in part[2]],
            np.concatenate([part[3] for part in parts]))


def error_sheet(items: list[dict], path: Path, title: str, columns: int = 8) -> None:
    """The crops the model got wrong, most confident first: true label, predicted label with its probability,
    data set and face width."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = max(1, (len(items) + columns - 1) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 1.6, rows * 2.0), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for number, (axis, item) in enumerate(zip(axes.flat, items)):
        if item["crop"] is None:
            axis.imshow(np.full((8, 8, 3), 200, np.uint8))
            axis.text(3.5, 3.5, "not\nredistributed", ha="center", va="center", fontsize=6)
        else:
            axis.imshow(item["crop"])
        axis.set_title(f"#{number} true {item['truth'][:9]}\n{item['guess'][:9]} {item['probability']:.2f}\n"
                       f"{item['source'][:5]} {item['width']:.0f}px", fontsize=6)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def main(argv=None) -> Report:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepared", type=Path, default=Path("data/prepared160"))
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--split", default="valid", choices=("train", "valid", "test"))
    parser.add_argument("--folds", type=Path, default=None,
                        help="a training.crossval runs folder: pool --candidate's fold models on their held-out folds")
    parser.add_argument("--candidate", default=None, help="with --folds: the candidate's name")
    parser.add_argument("--review", type=Path, default=None, help="a JSON {crop: verdict} of the real-photo errors")
    parser.add_argument("--sheet-limit", type=int, default=64, help="crops on the sheet of real-photo errors")
    parser.add_argument("--show-all", action="store_true",
                        help="put the ILC crops on the sheet too (for a folder of your own: that set states no "
                             "licence, so the committed sheets show a grey tile in their place)")
    parser.add_argument("--name", default="classifier_errors")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)

    if args.folds:
        if not args.candidate:
            parser.error("--folds needs --candidate")
        classifier, frame, crops, probabilities = pooled_held_out_predictions(args.folds, args.candidate,
                                                                              args.prepared)
        scope = f"the held-out folds of {args.candidate}"
        model_name = f"{args.folds}/{args.candidate}__fold*"
    else:
        classifier, frame, crops, probabilities = predict_split(args.model, args.prepared, args.split)
        model_name, scope = str(args.model), f"the {args.split} split"
    classes = classifier.classes
    truth = frame["label"].to_numpy()
    guess = np.array([classes[i] for i in probabilities.argmax(1)])
    datasets = frame["dataset"].to_numpy()
    # A data set labelled with_mask / without_mask only calls a mask below the nose with_mask (as validate does).
    two_labels = datasets == CROPS_FOLDER
    correct = (truth == guess) | (two_labels & (truth == WITH_MASK) & (guess == INCORRECT))
    widths = face_widths(frame["box"])
    real = np.isin(datasets, REAL_PHOTOS)
    report = Report(args.name, f"Where the classifier's errors are ({scope})",
                    command_line("bench.classifier_errors", argv), out_dir=args.out_dir, model=model_name,
                    model_version=classifier.model_version, prepared=str(args.prepared), scored_on=scope)

    by_class = {f"{dataset} / {label}": (datasets == dataset) & (truth == label)
                for dataset in sorted(set(datasets)) for label in classes
                if ((datasets == dataset) & (truth == label)).any()}
    report.table("By data set and true class", accuracy_rows(by_class, correct))
    confusion = Counter(zip(truth[real & ~correct], guess[real & ~correct]))
    report.table("Real photos: what each error was", [{"true": t, "predicted": g, "errors": n}
                                                      for (t, g), n in confusion.most_common()])
    by_size = {f"{label}, {size_name(low, high)}": real & (truth == label) & (widths >= low) & (widths < high)
               for label in classes for low, high in SIZE_BINS}
    report.table("Real photos by true class and face width (detector box, source pixels)",
                 [row for row in accuracy_rows(by_size, correct) if row["faces"]])
    sharpness = frame["blur"].to_numpy(dtype=float)
    cuts = np.quantile(sharpness[real], [0.25, 0.5, 0.75])
    quarters = np.digitize(sharpness, cuts)
    by_sharpness = {f"quarter {q + 1} ({'blurriest' if q == 0 else 'sharpest' if q == 3 else 'middle'})":
                    real & (quarters == q) for q in range(4)}
    report.table("Real photos by sharpness (variance of the Laplacian, quarters)",
                 accuracy_rows(by_sharpness, correct))

    order = np.argsort(-probabilities.max(1))
    errors = [{"crop": frame["crop"].iloc[i], "source": frame["dataset"].iloc[i].replace("face-mask-", ""),
               "truth": truth[i], "guess": guess[i], "probability": float(probabilities[i].max()),
               "width": float(widths[i]), "image": crops[i]} for i in order if real[i] and not correct[i]]
    reviewed = json.loads(args.review.read_text()) if args.review else {}
    unknown = set(reviewed.values()) - set(VERDICTS)
    if unknown:
        parser.error(f"--review: verdicts must be one of {', '.join(VERDICTS)}, not {', '.join(sorted(unknown))}")
    verdicts = Counter(reviewed.get(error["crop"], "not reviewed") for error in errors)
    report.table("Real-photo errors by annotation noise (a person's review of each crop)",
                 [{"verdict": verdict, "errors": verdicts.get(verdict, 0)}
                  for verdict in (*VERDICTS, "not reviewed")],
                 "`label wrong`: the annotation is wrong; `unclear`: the photo cannot tell (too small, too dark, "
                 "the mask hidden); `model wrong`: the label is right and visible.")
    sheet = f"{args.name}_real_photos.png"
    shown = errors[:args.sheet_limit]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    hidden = () if args.show_all else tuple(name.replace("face-mask-", "") for name in NOT_REDISTRIBUTED)
    error_sheet([{**e, "crop": None if e["source"] in hidden else e["image"]} for e in shown], args.out_dir / sheet,
                f"{len(errors)} real-photo errors on {scope}, most confident first ({len(shown)} shown)")
    report.figure(sheet, "Real-photo errors, most confident first")
    report.data["errors"] = [{"number": n, **{k: v for k, v in e.items() if k != "image"},
                              "verdict": reviewed.get(e["crop"], "not reviewed")} for n, e in enumerate(errors)]
    report.note(f"{int(correct.sum())} of {len(correct)} crops of {scope} right ({correct.mean():.4f}); real photos "
                f"{int(correct[real].sum())} of {int(real.sum())} ({correct[real].mean():.4f}).")
    report.save()
    return report


if __name__ == "__main__":
    main()
