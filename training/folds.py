"""K-fold cross-validation by photo over the train and valid splits of a prepared folder (the test split stays out).

Every face of one photo (a scene photo's faces, a crop-set near-duplicate group, and the masks drawn on those faces)
shares a manifest `group`, so a group lands wholly in one fold: no photo is ever on both sides of a fold.
"""
from __future__ import annotations

import hashlib

import pandas as pd

CV_SPLITS = ("train", "valid")
FOLD_SEED = 42  # fixed apart from the training seed, so every candidate and seed sees the same folds


def fold_of(group: str, folds: int, seed: int = FOLD_SEED) -> int:
    """The fold of a manifest group: a seeded hash, so it does not depend on row order or on the other rows."""
    digest = hashlib.sha256(f"{seed}:{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % folds


def with_fold_split(frame: pd.DataFrame, fold: int, folds: int, seed: int = FOLD_SEED) -> pd.DataFrame:
    """The train and valid rows of a manifest, their `split` rewritten: fold `fold` is valid, the others train."""
    if not 0 <= fold < folds or folds < 2:
        raise ValueError(f"fold {fold} of {folds}: need 0 <= fold < folds and folds >= 2")
    pooled = frame[frame["split"].isin(CV_SPLITS)].copy()
    held_out = pooled["group"].astype(str).map(lambda group: fold_of(group, folds, seed) == fold)
    pooled["split"] = held_out.map({True: "valid", False: "train"})
    return pooled
