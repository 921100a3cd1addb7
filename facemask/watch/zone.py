"""A zone: the polygon of the picture (pixels) where people count. Only faces whose centre is inside it are
counted, raise events and show in the in-view counts; all faces are still blurred. Drawn in the live view and the
recordings."""
from __future__ import annotations

import argparse

import cv2
import numpy as np

from facemask.core.boxes import centre

ZONE_COLOUR = (255, 215, 0)  # RGB: a thin yellow outline, apart from the label colours


def parse_zone(text: str) -> list[tuple[float, float]]:
    """'x1,y1 x2,y2 x3,y3 ...' (pixels, at least three corners)."""
    try:
        points = [tuple(float(value) for value in corner.split(",")) for corner in text.split()]
    except ValueError:
        points = []
    if len(points) < 3 or any(len(point) != 2 for point in points):
        raise argparse.ArgumentTypeError(f"--zone takes at least three corners 'x,y x,y x,y' in pixels, got {text!r}")
    return [(point[0], point[1]) for point in points]


class Zone:
    def __init__(self, corners: list[tuple[float, float]]):
        self.polygon = np.asarray(corners, dtype=np.float32).reshape(-1, 1, 2)

    def holds(self, box) -> bool:
        x, y = centre(np.asarray(box, dtype=np.float32))
        return cv2.pointPolygonTest(self.polygon, (float(x), float(y)), False) >= 0

    def draw(self, image_rgb: np.ndarray) -> np.ndarray:
        return cv2.polylines(image_rgb, [self.polygon.round().astype(np.int32)], isClosed=True, color=ZONE_COLOUR,
                             thickness=2, lineType=cv2.LINE_AA)
