"""Splitting the annotated scene photos by photo, and the one split file every part shares
(facemask.core.paths.SCENE_SPLIT_FILE): detector training writes it, classifier training and the benchmarks read it."""
from __future__ import annotations

import json
import random
from pathlib import Path

from facemask.core.paths import REAL_PHOTOS_SPLIT_FILE, SCENE_SPLIT_FILE
from training.annotations import DatasetError

SCENE_SPLIT_FRACTIONS = {"train": 0.7, "valid": 0.1, "test": 0.2}


def split_images(names: list[str], fractions: dict[str, float], seed: int) -> dict[str, str]:
    """{name: split}: a seeded shuffle cut into the fractions, in their order (the last split takes the rest)."""
    names = sorted(names)
    random.Random(seed).shuffle(names)
    splits, start = {}, 0
    for index, (split, fraction) in enumerate(fractions.items()):
        end = len(names) if index == len(fractions) - 1 else start + round(fraction * len(names))
        splits.update({name: split for name in names[start:end]})
        start = end
    return splits


def make_split(scenes: Path, seed: int, path: Path) -> dict:
    """Split the photos of scenes/annotations/*.xml and write the split file."""
    names = [p.stem for p in sorted((scenes / "annotations").glob("*.xml"))]
    if not names:
        raise DatasetError(f"no Pascal VOC .xml files in {scenes / 'annotations'}")
    assignment = split_images(names, SCENE_SPLIT_FRACTIONS, seed)
    split = {"seed": seed, "fractions": SCENE_SPLIT_FRACTIONS, "dataset": scenes.name,
             **{name: sorted(n for n, s in assignment.items() if s == name) for name in SCENE_SPLIT_FRACTIONS}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(split, indent=1) + "\n")
    return split


# Every committed split by photo; each names the data set (folder name) it splits.
SPLIT_FILES = (SCENE_SPLIT_FILE, REAL_PHOTOS_SPLIT_FILE)


def split_file_for(dataset: str) -> Path:
    """The committed split file of a data set (by folder name); the scene split for a folder none names, so that a
    renamed copy of the scene set keeps its split (photo_splits falls back to a seeded split when names differ)."""
    for path in SPLIT_FILES:
        if path.is_file() and json.loads(path.read_text()).get("dataset") == dataset:
            return path
    return SCENE_SPLIT_FILE


def load_split(path: Path = SCENE_SPLIT_FILE) -> dict:
    if not Path(path).is_file():
        raise DatasetError(f"scene split file not found: {path} (python -m training.train_detector writes it)")
    return json.loads(Path(path).read_text())


def photo_splits(names: list[str], fractions: dict[str, float], seed: int,
                 split_file: Path = SCENE_SPLIT_FILE) -> dict[str, str]:
    """The detector's scene split when it covers these photos, so that one photo split holds for the whole system
    and end-to-end tests on held-out photos stay unseen by both models; a fresh seeded split otherwise."""
    if Path(split_file).is_file():
        shared = load_split(split_file)
        assignment = {name: split for split in fractions for name in shared.get(split, [])}
        if all(name in assignment for name in names):
            return {name: assignment[name] for name in names}
    return split_images(names, fractions, seed)
