"""One face thumbnail per person of an annotated video (the upload page's people table), blurred unless asked not
to be (the same blur as the camera watcher's privacy mode, facemask.core.privacy)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from facemask.core.images import encode_jpeg
from facemask.core.privacy import anonymize

THUMBNAIL_SIDE = 96
MARGIN = 0.25  # of the face box on each side: a little hair and chin, so the picture reads as a head


def largest_sightings(record: dict) -> dict[int, tuple[int, list[float]]]:
    """{track id: (frame position, box)} where each counted person's face is largest."""
    counted = {track["track_id"] for track in (record.get("summary") or {}).get("tracks", []) if track["counted"]}
    best: dict[int, tuple[float, int, list[float]]] = {}
    for position, frame in enumerate(record.get("frames", [])):
        for face in frame["faces"]:
            track = face.get("track_id")
            if track in counted:
                x1, y1, x2, y2 = face["box"]
                area = (x2 - x1) * (y2 - y1)
                if track not in best or area > best[track][0]:
                    best[track] = (area, position, face["box"])
    return {track: (position, box) for track, (_, position, box) in best.items()}


def person_thumbnails(video: Path, record: dict, blur: bool) -> dict[int, bytes]:
    """{track id: JPEG} read from the annotated video in one pass."""
    wanted = largest_sightings(record)
    by_frame: dict[int, list[tuple[int, list[float]]]] = {}
    for track, (position, box) in wanted.items():
        by_frame.setdefault(position, []).append((track, box))
    thumbnails: dict[int, bytes] = {}
    capture = cv2.VideoCapture(str(video))
    try:
        position = 0
        while by_frame and position <= max(by_frame):
            ok, frame = capture.read()
            if not ok:
                break
            for track, box in by_frame.pop(position, []):
                thumbnails[track] = _thumbnail(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), box, blur)
            position += 1
    finally:
        capture.release()
    return thumbnails


def _thumbnail(image_rgb: np.ndarray, box: list[float], blur: bool) -> bytes:
    height, width = image_rgb.shape[:2]
    x1, y1, x2, y2 = box
    grow = MARGIN * max(x2 - x1, y2 - y1)
    left, top = max(0, int(x1 - grow)), max(0, int(y1 - grow))
    right, bottom = min(width, int(x2 + grow) + 1), min(height, int(y2 + grow) + 1)
    crop = image_rgb[top:bottom, left:right]
    if blur:
        crop = anonymize(crop, [[x1 - left, y1 - top, x2 - left, y2 - top]], "blur")
    scale = THUMBNAIL_SIDE / max(crop.shape[:2])
    crop = cv2.resize(crop, (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))),
                      interpolation=cv2.INTER_AREA)
    return encode_jpeg(crop)
