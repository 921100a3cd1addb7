"""Annotate images: green box = mask, red box = no mask, label and score in a filled tag that stays legible."""
from __future__ import annotations

import cv2
import numpy as np

GREEN, RED, ORANGE, GREY = (0, 200, 0), (220, 0, 0), (255, 140, 0), (150, 150, 150)  # RGB
LABEL_STYLE = {
    "with_mask": ("Mask", GREEN), "mask": ("Mask", GREEN),
    "without_mask": ("No mask", RED), "no_mask": ("No mask", RED),
    "mask_weared_incorrect": ("Mask worn wrong", ORANGE),
    "unclassified": ("Unclassified", GREY),
}


def style_for(label: str) -> tuple[str, tuple[int, int, int]]:
    return LABEL_STYLE.get(label, (label.replace("_", " ").capitalize(), ORANGE))


def draw_faces(image_rgb: np.ndarray, faces: list[dict]) -> np.ndarray:
    """A copy of the image with every face's box and tag; faces are dicts as in FrameResult.faces."""
    canvas = image_rgb.copy()
    height, width = canvas.shape[:2]
    # Line and text size follow the image, so tags are readable on a 4K photo and do not swamp a thumbnail.
    base = max(height, width)
    thickness = max(2, round(base / 400))
    font_scale = max(0.4, base / 1600)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for face in sorted(faces, key=lambda f: f["box"][1]):
        x1, y1, x2, y2 = (int(round(v)) for v in face["box"])
        text, colour = style_for(face["label"])
        if face.get("score") is not None:
            text = f"{text} {face['score'] * 100:.0f}%"
        if face.get("track_id") is not None:  # video: the person's track, steady while they are in view
            text = f"#{face['track_id']} {text}"
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
        (text_w, text_h), baseline = cv2.getTextSize(text, font, font_scale, max(1, thickness - 1))
        pad = max(2, thickness)
        tag_h = text_h + baseline + 2 * pad
        top = y1 - tag_h if y1 - tag_h >= 0 else min(y2, height - tag_h)  # above the box, else below it
        left = min(max(0, x1), max(0, width - text_w - 2 * pad))
        cv2.rectangle(canvas, (left, top), (left + text_w + 2 * pad, top + tag_h), colour, -1)
        cv2.putText(canvas, text, (left + pad, top + pad + text_h), font, font_scale, (255, 255, 255),
                    max(1, thickness - 1), cv2.LINE_AA)
    return canvas
