"""Annotated scenes (Pascal VOC), box matching and detection recall, shared by training and the benchmarks."""
from __future__ import annotations

import random
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facemask.core.boxes import expand_boxes, iou_matrix
from facemask.core.errors import FacemaskError

SCENE_CLASSES = ("with_mask", "without_mask", "mask_weared_incorrect")
IOU_THRESHOLDS = (0.5, 0.3)
FALSE_POSITIVE_IOU = 0.3  # a detection overlapping no annotated face this much is a false positive


class DatasetError(FacemaskError, ValueError):
    """A data set or split file is missing or malformed; the message is one line for the terminal."""


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
        box, name = obj.find("bndbox"), obj.findtext("name")
        if box is None or name is None:
            raise DatasetError(f"{xml_path}: an <object> without <bndbox> or <name>")
        # Coordinates are used as continuous pixel edges, like the detector's; the +-1 of VOC's inclusive
        # convention shifts IoU by a few percent on the smallest faces only.
        corners = [box.findtext(key) for key in ("xmin", "ymin", "xmax", "ymax")]
        if None in corners:
            raise DatasetError(f"{xml_path}: a <bndbox> without xmin, ymin, xmax and ymax")
        boxes.append([float(corner) for corner in corners if corner is not None])
        labels.append(name.strip())
    size = root.find("size")
    return Annotation(image=Path(image_dir or Path(xml_path).parent) / filename,
                      width=int(size.findtext("width") or 0) if size is not None else 0,
                      height=int(size.findtext("height") or 0) if size is not None else 0,
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
        raise DatasetError(f"no Pascal VOC .xml files in {annotations_dir}")
    missing = [a.image.name for a in annotations if not a.image.is_file()]
    if missing:
        raise DatasetError(f"{len(missing)} annotated images missing from {images_dir}, e.g. {missing[0]}")
    return subsample(annotations, limit, seed)


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


def scene_recall(detections: list, annotations: list, threshold: float, box_transform=(1.0, 1.0, 0.0),
                 iou_thresholds=IOU_THRESHOLDS) -> dict:
    """Recall per class at each IoU threshold and false positives per image at FALSE_POSITIVE_IOU.

    box_transform: (width factor, height factor, downward shift in box heights) applied to detector boxes.
    """
    classes = list(dict.fromkeys([*SCENE_CLASSES, *(label for a in annotations for label in a.labels)]))
    totals = {label: sum(a.labels.count(label) for a in annotations) for label in classes}
    hits = {iou: dict.fromkeys(classes, 0) for iou in iou_thresholds}
    false_positives = 0
    for (boxes, scores), annotation in zip(detections, annotations):
        keep = scores >= threshold
        boxes, scores = expand_boxes(boxes[keep], *box_transform), scores[keep]
        for iou in iou_thresholds:
            matches = greedy_match(boxes, scores, annotation.boxes, iou)
            for gt_index in matches[matches >= 0]:
                hits[iou][annotation.labels[gt_index]] += 1
            if iou == FALSE_POSITIVE_IOU:
                false_positives += int((matches < 0).sum())
    result = {"ground_truth": totals, "fp_per_image": false_positives / max(len(annotations), 1)}
    for iou in iou_thresholds:
        recall = {label: hits[iou][label] / totals[label] if totals[label] else float("nan") for label in classes}
        recall["all"] = sum(hits[iou].values()) / max(sum(totals.values()), 1)
        result[f"recall@{iou}"] = recall
    return result


def average_precision(scores, is_true_positive, num_ground_truth: int) -> float:
    """VOC (2010+) all-point interpolated AP: area under the precision envelope of the ranked detections."""
    if num_ground_truth == 0:
        return float("nan")
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    hits = np.asarray(is_true_positive, dtype=bool)[order]
    true_positives, false_positives = np.cumsum(hits), np.cumsum(~hits)
    recall = np.concatenate([[0.0], true_positives / num_ground_truth, [1.0]])
    precision = np.concatenate([[0.0], true_positives / np.maximum(true_positives + false_positives, 1), [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


def face_average_precision(detections: list, annotations: list[Annotation], iou_threshold: float = 0.5) -> float:
    """Detection AP over all faces, whatever their label: the threshold-free balance of recall and false positives."""
    scores, hits = [], []
    for (boxes, box_scores), annotation in zip(detections, annotations):
        matches = greedy_match(boxes, box_scores, annotation.boxes, iou_threshold)
        scores += list(box_scores)
        hits += list(matches >= 0)
    return average_precision(scores, hits, sum(len(a.boxes) for a in annotations))
