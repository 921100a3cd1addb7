"""Choose the classifier's crop size, context margin and architecture by measurement.

    python -m training.prepare --out data/prepared3_wide --scenes ../shared/datasets/face-mask-scenes-andrewmvd \\
        --synthetic 1 --detector detection/model/retinaface_mnet025_masks.onnx --crop-size 128 --face-fraction 0.62
    python -m training.sweep --prepared data/prepared3_wide --out runs/sweep --epochs 20 --lanes 3 --num-workers 4

Every configuration is trained from random weights with the same recipe and seed (training.train) on one prepared
folder cut with more context than any of them uses; each reframes it (facemask.core.crops.reframe), so all see the same
faces. Each is then evaluated on the valid split only (test stays untouched for the shipped model): all faces, the
real scene faces (what the product meets), the crop set and the drawn masks. Writes sweep.json and sweep.md in --out.
Lanes train configurations side by side (one GPU holds several); on a CPU keep one lane.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from facemask.core.classes import WITH_MASK, WITHOUT_MASK
from facemask.core.paths import REPO_ROOT
from training.data import prepared_geometry
from training.validate import SIZE_BUDGET_MB, labelled_metrics, measure_speed, predict_split

SCENES = "face-mask-scenes-andrewmvd"


@dataclass(frozen=True)
class SweepConfig:
    arch: str = "resnet18"
    stages: int = 3
    crop_size: int = 96
    face_fraction: float = 0.78

    @property
    def name(self) -> str:
        return f"{self.arch}-s{self.stages}-{self.crop_size}px-f{self.face_fraction:.2f}"


# One change at a time from the configuration served before the sweep (96 px, face fraction 0.78), most
# informative first (a deadline may cut the tail).
CONFIGS = [
    SweepConfig(),
    SweepConfig(face_fraction=0.62),
    SweepConfig(crop_size=64),
    SweepConfig(face_fraction=0.90),
    SweepConfig(arch="resnet34"),
    SweepConfig(face_fraction=0.70),
    SweepConfig(crop_size=128),
    SweepConfig(stages=4),
    SweepConfig(arch="resnet50"),
    SweepConfig(crop_size=64, face_fraction=0.70),
]


def log_path(out: Path) -> Path:
    return out.parent / (out.name + ".log")


def train(config: SweepConfig, args, out: Path, epochs: int) -> dict:
    command = [sys.executable, "-m", "training.train", "--prepared", str(args.prepared.resolve()),
               "--arch", config.arch, "--stages", str(config.stages), "--crop-size", str(config.crop_size),
               "--face-fraction", str(config.face_fraction), "--epochs", str(epochs), "--lr", str(args.lr),
               "--weight-power", str(args.weight_power), "--seed", str(args.seed),
               "--num-workers", str(args.num_workers), "--out", str(out.resolve())]
    started = time.time()
    with open(log_path(out), "w") as log:
        finished = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    return {"returncode": finished.returncode, "wall_seconds": round(time.time() - started, 1)}


def measures(model: Path, prepared: Path) -> dict:
    """Valid-split numbers of one exported model, overall and per source of faces (None where a source has no
    valid faces). The valid crops are decoded and classified once; each source is a slice of that."""
    classifier, frame, crops, probabilities = predict_split(model, prepared, "valid")
    labels = list(frame["label"])

    def source(dataset: str) -> dict:
        chosen = (frame["dataset"] == dataset).to_numpy()
        return labelled_metrics(classifier.classes, [label for label, keep in zip(labels, chosen) if keep],
                                probabilities[chosen])

    everything = labelled_metrics(classifier.classes, labels, probabilities)
    scenes = source(SCENES)
    classes = scenes["classes"]
    matrix = scenes["confusion_matrix"]
    unmasked = classes.index(WITHOUT_MASK)
    present = [v for v in scenes["per_class"].values() if v["support"]]
    row = {
        "valid_log_loss": everything["log_loss"], "valid_accuracy": everything["accuracy"],
        "scene_log_loss": scenes["log_loss"], "scene_accuracy": scenes["accuracy"] if scenes["images"] else None,
        "scene_balanced_accuracy": round(sum(v["recall"] for v in present) / len(present), 4) if present else None,
        "scene_recall": {name: v["recall"] for name, v in scenes["per_class"].items() if v["support"]},
        "scene_unmasked_called_mask": round(matrix[unmasked][classes.index(WITH_MASK)] / sum(matrix[unmasked]), 4)
        if sum(matrix[unmasked]) else None,
        "per_dataset_accuracy": {},
        "model_mb": round(model.stat().st_size / 1e6, 1),
    }
    for dataset in sorted({SCENES, "face-mask-chandrikadeb7", "synthetic_masks"}):
        metrics = scenes if dataset == SCENES else source(dataset)
        row["per_dataset_accuracy"][dataset] = (metrics.get("two_class_accuracy") or metrics["accuracy"]
                                                if metrics["images"] else None)
    row["crops_per_s_batch64"] = measure_speed(classifier, crops, 64)
    return row


def markdown(rows: list[dict], machine: str) -> str:
    lines = [f"Valid split only, every configuration from random weights with the same recipe; {machine}.", "",
             "| configuration | epochs | valid log loss | scene log loss | scene accuracy | scene balanced acc. | "
             "scene unmasked called mask | crop set (2-class) | drawn masks | MB | crops/s (b64) | train s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if "valid_log_loss" not in row:
            lines.append(f"| {row['name']} | {row.get('epochs')} | failed or skipped: {row.get('status')} |"
                         + " |" * 9)
            continue
        accuracy = row["per_dataset_accuracy"]
        cells = [row["valid_log_loss"], row["scene_log_loss"], row["scene_accuracy"], row["scene_balanced_accuracy"],
                 row["scene_unmasked_called_mask"], accuracy["face-mask-chandrikadeb7"], accuracy["synthetic_masks"]]
        lines.append(f"| {row['name']} | {row['epochs']} | "
                     + " | ".join("n/a" if v is None else f"{v:.4f}" for v in cells)
                     + f" | {row['model_mb']} | {row['crops_per_s_batch64']} | {row['wall_seconds']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepared", type=Path, required=True, help="training.prepare output with wide crops")
    parser.add_argument("--out", type=Path, default=Path("runs/sweep"))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--weight-power", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--lanes", type=int, default=1, help="configurations trained at once")
    parser.add_argument("--num-workers", type=int, default=0, help="data loader processes per configuration")
    parser.add_argument("--only", nargs="*", default=None, help="configuration names to run (default: all)")
    parser.add_argument("--start-deadline", type=float, default=0.0, metavar="MINUTES",
                        help="start no configuration after this many minutes (0: no deadline)")
    parser.add_argument("--final-epochs", type=int, default=0,
                        help="then train the configuration with the lowest scene log loss that fits the size budget "
                             "again for this many epochs (0: skip)")
    parser.add_argument("--final-deadline", type=float, default=0.0, metavar="MINUTES",
                        help="skip that final training when the sweep ends after this many minutes (0: no deadline)")
    args = parser.parse_args(argv)
    if not (args.prepared / "manifest.csv").is_file():
        parser.error(f"{args.prepared}/manifest.csv not found: run training.prepare first")
    wide = prepared_geometry(args.prepared)
    configs = [c for c in CONFIGS if args.only is None or c.name in args.only]
    too_narrow = [c.name for c in configs if c.face_fraction < wide.face_fraction]
    if too_narrow:
        parser.error(f"{args.prepared} is cut at face fraction {wide.face_fraction}: too little context for "
                     f"{too_narrow}")
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()

    def run(config: SweepConfig, epochs: int, suffix: str = "", deadline: float = args.start_deadline) -> dict:
        row = {"name": config.name + suffix, **asdict(config), "epochs": epochs}
        if deadline and time.time() - started > deadline * 60:
            return {**row, "status": "skipped: start deadline passed"}
        out = args.out / (config.name + suffix)
        row.update(train(config, args, out, epochs))
        if row["returncode"] != 0 or not (out / "model.onnx").is_file():
            return {**row, "status": f"training failed, see {log_path(out)}"}
        print(f"{row['name']}: trained in {row['wall_seconds']} s", flush=True)
        return {**row, **measures(out / "model.onnx", args.prepared), "model": str(out / "model.onnx")}

    with ThreadPoolExecutor(max_workers=args.lanes) as pool:
        rows = list(pool.map(lambda c: run(c, args.epochs), configs))
    write_results(args.out, rows)
    if args.final_epochs:
        servable = [r for r in rows if r.get("scene_log_loss") is not None and r["model_mb"] <= SIZE_BUDGET_MB]
        if servable:
            best = min(servable, key=lambda r: r["scene_log_loss"])
            config = SweepConfig(best["arch"], best["stages"], best["crop_size"], best["face_fraction"])
            rows.append(run(config, args.final_epochs, f"-final{args.final_epochs}", args.final_deadline))
            write_results(args.out, rows)
    print(markdown(rows, machine_description()))
    return rows


def machine_description() -> str:
    import os
    import platform

    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores"
    import torch

    if torch.cuda.is_available():
        machine += f", trained on {torch.cuda.get_device_name(0)}"
    return machine


def write_results(out: Path, rows: list[dict]) -> None:
    """Written after the sweep and again after the final training, so a run cut short keeps what it measured."""
    machine = machine_description()
    (out / "sweep.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    (out / "sweep.md").write_text(markdown(rows, machine))


if __name__ == "__main__":
    main()
