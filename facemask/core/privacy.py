"""What leaves the process without identifying anyone: faces made unrecognisable in pictures (recordings, the live
view), boxes kept; and source URLs shown without their secrets (redact_url).

Each face box is grown by a margin (hair, ears and the jaw identify people too) and blurred or pixelated so
strongly that the project's own detector no longer finds a face there (tests/test_watch.py checks it). The label
boxes are drawn afterwards on top, so their colours and tags stay readable.
"""
from __future__ import annotations

from typing import Iterable
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from facemask.core.boxes import widths_heights

PRIVACY_MODES = ("blur", "pixelate", "none")
MARGIN = 0.25  # of the box's width / height, on each side
PIXELATE_BLOCKS = 6  # blocks across a face: a face shape without features
HIDDEN = "***"


def redact_url(url: str) -> str:
    """A URL as logs, answers, metrics, events and file names may show it: its user info (user name and password)
    and the values of its query and fragment become ***, e.g. rtsp://admin:pw@cam/s?token=abc gives
    rtsp://***@cam/s?token=***. Cameras carry credentials there (issue 35: the watch logged a camera's password,
    /counts its token). Anything that is not a URL with a host (a file, a camera index) is returned as it is."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket: nothing can be shown of it safely
        return HIDDEN
    if not parts.scheme or not parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    query = "&".join(f"{key}={HIDDEN}" if separator else HIDDEN
                     for key, separator, _ in (item.partition("=") for item in parts.query.split("&")))
    return urlunsplit(parts._replace(netloc=f"{HIDDEN}@{host}" if "@" in parts.netloc else host,
                                     query=query if parts.query else "", fragment=HIDDEN if parts.fragment else ""))


def anonymize(image_rgb: np.ndarray, boxes: Iterable, mode: str = "blur") -> np.ndarray:
    """A copy of the image with every box (x1, y1, x2, y2) blurred or pixelated; the image itself when mode is none."""
    if mode not in PRIVACY_MODES:
        raise ValueError(f"privacy mode must be one of {', '.join(PRIVACY_MODES)}, got {mode!r}")
    boxes = [np.asarray(box, dtype=np.float32) for box in boxes]
    if mode == "none" or not boxes:
        return image_rgb
    canvas = image_rgb.copy()
    height, width = canvas.shape[:2]
    for box in boxes:
        grow = widths_heights(box) * MARGIN
        x1, y1 = np.floor(np.maximum(box[:2] - grow, 0)).astype(int)
        x2, y2 = np.ceil(np.minimum(box[2:] + grow, [width, height])).astype(int)
        if x2 - x1 < 2 or y2 - y1 < 2:
            continue
        region = canvas[y1:y2, x1:x2]
        if mode == "pixelate":
            rows, columns = region.shape[:2]
            scale = PIXELATE_BLOCKS / min(rows, columns)
            small = cv2.resize(region, (max(1, round(columns * scale)), max(1, round(rows * scale))),
                               interpolation=cv2.INTER_AREA)
            canvas[y1:y2, x1:x2] = cv2.resize(small, (columns, rows), interpolation=cv2.INTER_NEAREST)
        else:
            # Shrink, blur and grow back: the same look as a huge Gaussian kernel for a fraction of its cost.
            small = cv2.resize(region, (16, 16), interpolation=cv2.INTER_AREA)
            small = cv2.GaussianBlur(small, (0, 0), sigmaX=2.5, borderType=cv2.BORDER_REPLICATE)
            canvas[y1:y2, x1:x2] = cv2.resize(small, (region.shape[1], region.shape[0]),
                                              interpolation=cv2.INTER_LINEAR)
    return canvas
