"""Annotate images: green box = mask, red box = no mask, amber box = mask worn wrong (below the nose or on the chin).

Label and score sit in a filled tag whose text reaches WCAG AA contrast (4.5:1). Colour is never the only cue: each
class has its own tag text, and green and amber differ from red in brightness too (dark text on them), for colour-blind
viewers.
"""
from __future__ import annotations

from typing import Iterable

import cv2
import numpy as np

from facemask.core.classes import INCORRECT, WITH_MASK, WITHOUT_MASK, canonical_label
from facemask.core.results import UNCLASSIFIED, FaceResult

GREEN, RED, AMBER, GREY = (0, 200, 0), (220, 0, 0), (255, 176, 0), (150, 150, 150)  # RGB
ORANGE = AMBER  # earlier name, kept for callers
WHITE, BLACK = (255, 255, 255), (0, 0, 0)
LABEL_STYLE = {
    WITH_MASK: ("Mask", GREEN), "mask": ("Mask", GREEN),
    WITHOUT_MASK: ("No mask", RED), "no_mask": ("No mask", RED),
    INCORRECT: ("Mask worn wrong", AMBER),
    UNCLASSIFIED: ("Unclassified", GREY),
}


def style_for(label: str) -> tuple[str, tuple[int, int, int]]:
    """Tag text and colour of a label, of this product or of a data set (facemask.core.classes.canonical_label)."""
    return LABEL_STYLE.get(canonical_label(label), (label.replace("_", " ").capitalize(), AMBER))


def relative_luminance(colour: tuple[int, int, int]) -> float:
    """WCAG 2 relative luminance of an sRGB colour."""
    linear = [c / 255 / 12.92 if c <= 10 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in colour]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast_ratio(first: tuple[int, int, int], second: tuple[int, int, int]) -> float:
    """WCAG 2 contrast ratio, 1 to 21; AA asks 4.5 for text."""
    lighter, darker = sorted((relative_luminance(first), relative_luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def text_colour_on(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever contrasts more with the tag: every class colour then reaches WCAG AA (4.5:1) without
    changing (white on the old green read 2.3:1, issue 37)."""
    return BLACK if contrast_ratio(BLACK, colour) >= contrast_ratio(WHITE, colour) else WHITE


def tag_size(box_height: float, image_long_side: int) -> tuple[float, int]:
    """Font scale and box line thickness for one face. They follow the image, so tags read on a 4K photo and do
    not swamp a thumbnail, but not beyond the face: in a 12 MP crowd full-size tags would bury the faces next to
    them. The floor keeps a tag readable on the photo shrunk about 3.5x to fit a screen (the upload page's preview)."""
    font_scale = max(0.4, min(image_long_side / 1600, max(image_long_side / 3200, box_height / 40)))
    thickness = max(2, round(min(image_long_side / 400, max(image_long_side / 1000, box_height / 20))))
    return font_scale, thickness


def draw_faces(image_rgb: np.ndarray, faces: Iterable[FaceResult]) -> np.ndarray:
    """A copy of the image with every face's box and tag (FrameResult.faces)."""
    canvas = image_rgb.copy()
    height, width = canvas.shape[:2]
    base = max(height, width)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for face in sorted(faces, key=lambda f: f.box[1]):
        x1, y1, x2, y2 = (int(round(v)) for v in face.box)
        font_scale, thickness = tag_size(y2 - y1, base)
        text_thickness = max(1, min(thickness - 1, round(font_scale * 1.5)))
        label, colour = style_for(face.label)
        text = label if face.score is None else f"{label} {face.score * 100:.0f}%"
        if face.track_id is not None:  # video: the person's track, steady while they are in view
            text = f"#{face.track_id} {text}"
        (text_w, text_h), baseline = cv2.getTextSize(text, font, font_scale, text_thickness)
        if face.score is not None and text_w > 3 * max(1, x2 - x1):  # a small face: its label, the score in JSON
            text = text.removesuffix(f" {face.score * 100:.0f}%")
            (text_w, text_h), baseline = cv2.getTextSize(text, font, font_scale, text_thickness)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
        pad = max(2, thickness)
        tag_h = text_h + baseline + 2 * pad
        top = y1 - tag_h if y1 - tag_h >= 0 else min(y2, height - tag_h)  # above the box, else below it
        left = min(max(0, x1), max(0, width - text_w - 2 * pad))
        cv2.rectangle(canvas, (left, top), (left + text_w + 2 * pad, top + tag_h), colour, -1)
        cv2.putText(canvas, text, (left + pad, top + pad + text_h), font, font_scale, text_colour_on(colour),
                    text_thickness, cv2.LINE_AA)
    return canvas
