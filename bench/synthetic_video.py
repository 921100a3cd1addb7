"""Videos with known faces: a virtual camera moving over an annotated photo (pan, zoom, shake).

Every frame is the photo seen through a 4:3 window that stays inside it, scaled to the frame size, so each
annotated face's box in every frame follows from the window, and its identity is its index in the photo.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facemask.core.boxes import areas, clip_to_image, widths_heights

MOTIONS = ("pan", "zoom", "shake", "pan+zoom+shake")


@dataclass
class GroundTruthFrame:
    ids: list[int]  # annotation index in the photo
    boxes: np.ndarray  # (N, 4) in frame pixels, clipped to the frame
    labels: list[str]
    ignored: list[bool]  # too small or mostly outside the frame: neither a miss nor a false positive


def camera_windows(photo_w: int, photo_h: int, frames: int, motion: str, seed: int,
                   aspect: float = 4 / 3, view: float = 0.8) -> np.ndarray:
    """(frames, 3) windows x0, y0, width (height = width / aspect), inside the photo; `view` is the share of the
    photo's width (or height) the camera sees when it is not zooming."""
    rng = np.random.default_rng(seed)
    full = min(photo_w, photo_h * aspect)
    t = np.linspace(0.0, 1.0, frames)
    width = np.full(frames, view * full)
    if "zoom" in motion:  # zoom in and back out
        width = full * (0.9 - 0.3 * np.sin(np.pi * t))
    cx = np.full(frames, photo_w / 2)
    cy = np.full(frames, photo_h / 2)
    if "pan" in motion:  # left to right across the room, a little vertical drift
        cx = photo_w / 2 + (t - 0.5) * (photo_w - width) * 0.95
        cy = photo_h / 2 + np.sin(2 * np.pi * t) * (photo_h - width / aspect) * 0.2
    if "shake" in motion:  # hand-held camera: smoothed random jitter of about 2 % of the view
        jitter = rng.normal(0.0, 0.02, size=(frames, 2))
        for i in range(1, frames):
            jitter[i] = 0.6 * jitter[i - 1] + 0.4 * jitter[i]
        cx = cx + jitter[:, 0] * width * 2.0
        cy = cy + jitter[:, 1] * width * 2.0
    x0 = np.clip(cx - width / 2, 0, photo_w - width)
    y0 = np.clip(cy - width / aspect / 2, 0, photo_h - width / aspect)
    return np.stack([x0, y0, width], axis=1)


def render(photo_rgb: np.ndarray, window, size: tuple[int, int]) -> np.ndarray:
    x0, y0, width = window
    scale = size[0] / width
    matrix = np.array([[scale, 0, -scale * x0], [0, scale, -scale * y0]], dtype=np.float64)
    return cv2.warpAffine(photo_rgb, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def ground_truth(boxes: np.ndarray, labels: list[str], window, size: tuple[int, int],
                 min_face: float, min_visible: float = 0.5) -> GroundTruthFrame:
    x0, y0, width = window
    scale = size[0] / width
    moved = (boxes - np.array([x0, y0, x0, y0])) * scale
    clipped = clip_to_image(moved, size[0], size[1])
    visible = areas(clipped) / np.maximum(areas(moved), 1e-6)
    present = visible > 0
    small = widths_heights(moved).min(axis=1) < min_face
    ids = [int(i) for i in np.flatnonzero(present)]
    return GroundTruthFrame(ids=ids, boxes=clipped[present].astype(np.float32), labels=[labels[i] for i in ids],
                            ignored=[bool(small[i] or visible[i] < min_visible) for i in ids])


def write_video(photo_rgb: np.ndarray, boxes: np.ndarray, labels: list[str], path: Path, frames: int,
                motion: str, seed: int, size: tuple[int, int] = (640, 480), fps: float = 25.0,
                min_face: float = 0.0) -> list[GroundTruthFrame]:
    """Write the synthetic video (mp4v) and return its ground truth per frame."""
    windows = camera_windows(photo_rgb.shape[1], photo_rgb.shape[0], frames, motion, seed, size[0] / size[1])
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
    truth = []
    try:
        for window in windows:
            writer.write(cv2.cvtColor(render(photo_rgb, window, size), cv2.COLOR_RGB2BGR))
            truth.append(ground_truth(boxes, labels, window, size, min_face))
    finally:
        writer.release()
    return truth
