"""The classifier's training manifest (manifest.csv beside the crops): its columns, rows and crop files, shared by
the crop-set preparation (training.prepare), scene faces (training.scenes) and drawn masks
(training.synthetic_masks)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

MANIFEST_COLUMNS = ("source", "label", "status", "crop", "box", "landmarks", "det_score", "det_side", "blur", "group",
                    "split", "dataset")


def manifest_row(**values) -> dict:
    return {column: values.get(column, "") for column in MANIFEST_COLUMNS}


def save_crop(out: Path, crop_path: Path, crop, landmarks: np.ndarray, det_score: float, row: dict) -> None:
    """Write a crop under out and record it, its face's landmarks and detector score and its sharpness in the
    manifest row."""
    (out / crop_path).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out / crop_path), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    row.update(crop=str(crop_path), landmarks=json.dumps(landmarks.round(1).tolist()),
               det_score=round(float(det_score), 4), blur=round(float(cv2.Laplacian(gray, cv2.CV_64F).var()), 1))
