"""fastai data pipeline over a prepared folder (training/prepare.py).

Crops are made by facemask.core.crops.crop_face at the folder's geometry (report.json) and reframed to the
model's (facemask.core.crops.reframe) when the folder was prepared with more context; normalisation uses
facemask.core.crops.MEAN and STD, the same constants facemask.core.crops.to_model_input applies when serving.
"""
from __future__ import annotations

import io
import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
from fastai.vision.all import (
    CategoryBlock,
    ColSplitter,
    DataBlock,
    ImageBlock,
    Normalize,
    PILImage,
    RandTransform,
    Transform,
    aug_transforms,
)
from PIL import Image, ImageFilter

from facemask.core.crops import LEGACY_FACE_FRACTION, MEAN, SERVED, STD, CropGeometry, reframe
from training.folds import with_fold_split


def prepared_geometry(prepared: Path) -> CropGeometry:
    """The crop geometry a folder was prepared with (folders from before the option were cut at 96 px and the
    legacy face fraction)."""
    report = json.loads((prepared / "report.json").read_text()) if (prepared / "report.json").is_file() else {}
    if "crop_geometry" in report:
        return CropGeometry(**report["crop_geometry"])
    return CropGeometry(SERVED.size, LEGACY_FACE_FRACTION)


class Reframe(Transform):
    """Prepared crop -> the model's geometry (training and validation alike)."""

    order = 0

    def __init__(self, source: CropGeometry, target: CropGeometry):
        super().__init__()
        self.source, self.target = source, target

    def encodes(self, image: PILImage):
        return PILImage.create(reframe(np.asarray(image), self.source, self.target))


class RandomLowResolution(RandTransform):
    """Down- and up-sample a crop, with a little blur: faces in scene photos are often 20-40 px wide."""

    split_idx, order = 0, 5  # training only; before ToTensor

    def __init__(self, p: float = 0.5, min_side: int = 12):
        super().__init__(p=p)
        self.min_side = min_side

    def before_call(self, b, split_idx):
        super().before_call(b, split_idx)
        self.position = random.random()  # where between min_side and the crop's own side
        self.radius = random.choice([0.0, 0.0, 0.6, 1.2])

    def encodes(self, image: PILImage):
        side = self.min_side + round(self.position * (image.size[0] - self.min_side))
        small = image.resize((side, side), Image.Resampling.BILINEAR)
        if self.radius:
            small = small.filter(ImageFilter.GaussianBlur(self.radius))
        return PILImage(small.resize(image.size, Image.Resampling.BILINEAR))


class RandomCameraConditions(RandTransform):
    """What shop and street cameras do to a face: JPEG blocks, low light with sensor noise, colour casts."""

    split_idx, order = 0, 6  # training only; after RandomLowResolution, before ToTensor

    def __init__(self, p: float = 0.6):
        super().__init__(p=p)

    def before_call(self, b, split_idx):
        super().before_call(b, split_idx)
        self.jpeg_quality = random.randint(15, 70) if random.random() < 0.4 else None
        self.gamma = random.uniform(1.4, 2.6) if random.random() < 0.25 else None
        self.noise = random.uniform(3.0, 12.0)
        self.cast = [random.uniform(0.75, 1.25) for _ in range(3)] if random.random() < 0.35 else None

    def encodes(self, image: PILImage):
        pixels = np.asarray(image, dtype=np.float32)
        if self.gamma:
            pixels = 255.0 * (pixels / 255.0) ** self.gamma
            pixels += np.random.normal(0.0, self.noise, pixels.shape)
        if self.cast:
            pixels *= np.asarray(self.cast, dtype=np.float32)
        result = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        if self.jpeg_quality:
            buffer = io.BytesIO()
            result.save(buffer, format="JPEG", quality=self.jpeg_quality)
            result = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
        return PILImage(result)


def crop_path(row) -> str:
    return row["path"]


def crop_label(row) -> str:
    return row["label"]


def read_manifest(prepared: Path) -> pd.DataFrame:
    frame = pd.read_csv(prepared / "manifest.csv")
    frame = frame[frame["status"] == "ok"].copy()
    if "dataset" not in frame:  # manifests written before prepare --scenes existed hold one data set
        frame["dataset"] = json.loads((prepared / "report.json").read_text())["data"].rstrip("/").split("/")[-1]
    frame["path"] = [str(prepared / c) for c in frame["crop"]]
    return frame


def batch_transforms(augment: bool = True):
    augmentations = aug_transforms(do_flip=True, max_rotate=15.0, max_zoom=1.15, max_lighting=0.35,
                                   max_warp=0.1, p_affine=0.75, p_lighting=0.75) if augment else []
    return [*augmentations, Normalize.from_stats(MEAN, STD)]


def make_dataloaders(prepared: Path, batch_size: int = 64, seed: int = 42, augment: bool = True,
                     geometry: CropGeometry = SERVED, num_workers: int = 0, exclude_datasets: tuple[str, ...] = (),
                     fold: tuple[int, int] | None = None, train_on_valid: bool = False):
    """num_workers 0 by default: on a 2-core machine worker processes only add copying. exclude_datasets: data
    sets of the manifest left out of training and validation (e.g. the drawn masks, to measure what they add).
    fold (k, n): cross-validation, training on the train and valid photos outside fold k of n and validating on
    those inside it (training.folds). train_on_valid: the final model of a recipe chosen by cross-validation, trained
    on the train and valid photos (the valid crops stay the validation set too, so its numbers are no longer
    held out)."""
    frame = read_manifest(prepared)
    if fold is not None:
        frame = with_fold_split(frame, fold[0], fold[1])
    unknown = set(exclude_datasets) - set(frame["dataset"])
    if unknown:
        raise ValueError(f"no data set named {sorted(unknown)} in {prepared} (it has {sorted(set(frame['dataset']))})")
    frame = frame[frame["split"].isin(["train", "valid"]) & ~frame["dataset"].isin(exclude_datasets)]
    frame["is_valid"] = frame["split"] == "valid"
    if train_on_valid:
        frame = pd.concat([frame.assign(is_valid=False), frame[frame["is_valid"]]])
    frame = frame.reset_index(drop=True)
    block = DataBlock(
        blocks=(ImageBlock, CategoryBlock),
        get_x=crop_path, get_y=crop_label,
        splitter=ColSplitter("is_valid"),
        item_tfms=[Reframe(prepared_geometry(prepared), geometry),
                   *([RandomLowResolution(p=0.4), RandomCameraConditions()] if augment else [])],
        batch_tfms=batch_transforms(augment),
    )
    return block.dataloaders(frame, bs=batch_size, num_workers=num_workers, seed=seed)
