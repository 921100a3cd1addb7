"""Annotated scenes (Pascal VOC) and box matching, shared by training (scene faces) and the benchmarks."""
from __future__ import annotations

import random
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Annotation:
    """One annotated scene: ground-truth boxes (x1, y1, x2, y2 in image pixels) and their labels."""

    image: Path
    width: int
    height: int
    boxes: np.ndarray  # (N, 4) float32
    labels: list[str]


def parse_voc(xml_path: Path, image_dir: Path | None = None) -> Annotation:
    root = ET.parse(xml_path).getroot()
    filename = root.findtext("filename") or Path(xml_path).with_suffix(".jpg").name
    boxes, labels = [], []
    for obj in root.iter("object"):
        box = obj.find("bndbox")
        # Coordinates are used as continuous pixel edges, like the detector's; the +-1 of VOC's inclusive
        # convention shifts IoU by a few percent on the smallest faces only.
        boxes.append([float(box.findtext(key)) for key in ("xmin", "ymin", "xmax", "ymax")])
        labels.append(obj.findtext("name").strip())
    size = root.find("size")
    return Annotation(image=Path(image_dir or Path(xml_path).parent) / filename,
                      width=int(size.findtext("width")) if size is not None else 0,
                      height=int(size.findtext("height")) if size is not None else 0,
                      boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4), labels=labels)


def subsample(items: list, limit: int | None, seed: int = 0) -> list:
    """A reproducible random subset, in the original order (file names are not a random order)."""
    if not limit or limit >= len(items):
        return list(items)
    keep = set(random.Random(seed).sample(range(len(items)), limit))
    return [item for i, item in enumerate(items) if i in keep]


def load_scenes(images_dir: Path, annotations_dir: Path, limit: int | None = None, seed: int = 0) -> list[Annotation]:
    annotations = [parse_voc(path, images_dir) for path in sorted(Path(annotations_dir).glob("*.xml"))]
    if not annotations:
        raise SystemExit(f"error: no Pascal VOC .xml files in {annotations_dir}")
    missing = [a.image.name for a in annotations if not a.image.is_file()]
    if missing:
        raise SystemExit(f"error: {len(missing)} annotated images missing from {images_dir}, e.g. {missing[0]}")
    return subsample(annotations, limit, seed)


def iou_matrix(a, b) -> np.ndarray:
    """(len(a), len(b)) intersection over union of x1, y1, x2, y2 boxes."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)

    def area(boxes):
        return np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)

    union = area(a)[:, None] + area(b)[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def greedy_match(pred_boxes, pred_scores, gt_boxes, iou_threshold: float) -> np.ndarray:
    """One-to-one matching: the highest-scoring prediction first takes the free ground truth it overlaps most.

    Returns, per prediction, the index of its ground-truth box or -1.
    """
    pred_scores = np.asarray(pred_scores, dtype=np.float64).reshape(-1)
    matches = np.full(len(pred_scores), -1, dtype=int)
    ious = iou_matrix(pred_boxes, gt_boxes)
    if ious.shape[1] == 0:
        return matches
    taken = np.zeros(ious.shape[1], dtype=bool)
    for i in np.argsort(-pred_scores, kind="stable"):
        candidates = np.where(taken, -1.0, ious[i])
        best = int(np.argmax(candidates))
        if candidates[best] >= iou_threshold:
            matches[i], taken[best] = best, True
    return matches
