"""Events as JSON Lines, and the face thumbnail an event may carry."""
from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import cv2
import numpy as np

from facemask.core.boxes import longest_side

log = logging.getLogger("facemask.watch")


class EventLog:
    """Events as JSON Lines, flushed line by line: complete after a kill, readable while the watch runs."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(path, "a", encoding="utf-8")

    def write(self, event: dict) -> None:
        self.handle.write(json.dumps(event) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


def thumbnail(image_rgb: np.ndarray, box, size: int = 128) -> str:
    """The face and a margin around it, at most `size` px, as base64 JPEG (only with --thumbnails)."""
    x1, y1, x2, y2 = box
    grow = 0.2 * longest_side(box)
    height, width = image_rgb.shape[:2]
    x1, y1 = int(max(0, x1 - grow)), int(max(0, y1 - grow))
    x2, y2 = int(min(width, x2 + grow)), int(min(height, y2 + grow))
    crop = image_rgb[y1:y2, x1:x2]
    scale = min(1.0, size / max(crop.shape[:2]))
    if scale < 1.0:
        crop = cv2.resize(crop, (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))),
                          interpolation=cv2.INTER_AREA)
    jpeg = cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])[1]
    return base64.b64encode(jpeg.tobytes()).decode("ascii")
