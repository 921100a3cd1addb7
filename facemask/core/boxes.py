"""Box geometry, in one place: every box is x1, y1, x2, y2 in pixels, one box as a (4,) array or sequence, several
as an (N, 4) array. Detection (NMS, containment, tiles), tracking (association, re-identification) and the
benchmarks' matching all measure boxes with these functions.
"""
from __future__ import annotations

import numpy as np


def as_boxes(boxes, dtype=np.float64) -> np.ndarray:
    """(N, 4) array of one box or many."""
    return np.asarray(boxes, dtype=dtype).reshape(-1, 4)


def widths_heights(boxes) -> np.ndarray:
    """Width and height: (2,) for one box, (N, 2) for (N, 4) boxes."""
    boxes = np.asarray(boxes)
    return boxes[..., 2:] - boxes[..., :2]


def areas(boxes) -> np.ndarray:
    """(N,) areas of (N, 4) boxes; an inverted box has none."""
    return np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)


def longest_side(box) -> float:
    return float(max(box[2] - box[0], box[3] - box[1]))


def shortest_side(box) -> float:
    return float(min(box[2] - box[0], box[3] - box[1]))


def centre(box) -> np.ndarray:
    box = np.asarray(box)
    return (box[..., :2] + box[..., 2:]) / 2


def to_xywh(boxes: np.ndarray) -> np.ndarray:
    """x, y, width, height (OpenCV's convention) of (N, 4) x1, y1, x2, y2 boxes."""
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def clip_to_image(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Boxes (one or (N, 4)) clipped to a width x height image, as a new array."""
    return np.clip(boxes, 0, [width, height, width, height])


def iou_matrix(a, b) -> np.ndarray:
    """(len(a), len(b)) intersection over union."""
    a, b = as_boxes(a), as_boxes(b)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    union = areas(a)[:, None] + areas(b)[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def iou(a, b) -> float:
    """Intersection over union of two boxes (0 when they do not overlap)."""
    return float(iou_matrix(a, b)[0, 0])


def overlap_of_smaller(a, b) -> np.ndarray:
    """(len(a), len(b)) intersection over the smaller box's area: 1 when one box lies inside the other."""
    a, b = as_boxes(a, np.float32), as_boxes(b, np.float32)
    corner_lo = np.maximum(a[:, None, :2], b[None, :, :2])
    corner_hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    intersection = np.prod((corner_hi - corner_lo).clip(min=0), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1).clip(min=1e-6)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1).clip(min=1e-6)
    return intersection / np.minimum(area_a[:, None], area_b[None, :])


def expand_boxes(boxes, factor: float, factor_y: float | None = None, shift_y: float = 0.0) -> np.ndarray:
    """Scale boxes about their centres (factor_y: vertically, default factor), then move them down by shift_y
    box heights: to compare tight face boxes with annotations drawn to another convention."""
    boxes = as_boxes(boxes, np.float32)
    factor_y = factor if factor_y is None else factor_y
    if factor == factor_y == 1.0 and shift_y == 0.0:
        return boxes
    size = boxes[:, 2:] - boxes[:, :2]
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2 + size * np.array([0.0, shift_y], dtype=np.float32)
    half = size / 2 * np.array([factor, factor_y], dtype=np.float32)
    return np.concatenate([centres - half, centres + half], axis=1)


def reading_order(boxes, row_tolerance: float = 0.5) -> list[int]:
    """Indices of the boxes in reading order: rows top to bottom, each row left to right, as people number faces.

    A box joins the current row while its centre lies less than row_tolerance times the row's mean box height
    below the row's first centre, so the slightly uneven heads of one row of a crowd read as one row."""
    boxes = as_boxes(boxes)
    if not len(boxes):
        return []
    centres, heights = centre(boxes), np.maximum(widths_heights(boxes)[:, 1], 1e-6)
    rows: list[list[int]] = []
    for index in np.argsort(centres[:, 1], kind="stable"):
        row = rows[-1] if rows else None
        if row is not None and centres[index, 1] - centres[row[0], 1] < row_tolerance * heights[row].mean():
            row.append(int(index))
        else:
            rows.append([int(index)])
    return [index for row in rows for index in sorted(row, key=lambda i: (centres[i, 0], centres[i, 1]))]
