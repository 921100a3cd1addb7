"""The one place where a face becomes classifier input.

Training data preparation, evaluation and both services import this module, so a model is always served with the
crop geometry and normalisation it was trained with. Two steps:

1. ``crop_face``: full image + 5 landmarks (or a box) -> aligned RGB uint8 crop of CROP_SIZE x CROP_SIZE.
   Done by the detection side; crops travel to the classifier as lossless PNG.
2. ``to_model_input``: crops -> float32 NCHW batch normalised with MEAN / STD.
   Done by the classifier; fastai training uses the same MEAN / STD (see training/data.py).
"""
from __future__ import annotations

import cv2
import numpy as np

CROP_SIZE = 96
# ImageNet statistics: what fastai's Normalize uses for a ResNet, and what --pretrained weights expect.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

# ArcFace's 5-point template for a 112x112 crop (eyes, nose tip, mouth corners; image-left first). It frames
# eyebrows to lower lip; masks need the whole lower face, so the template is shrunk towards its centre by
# FACE_FRACTION, which leaves margin for the chin, mask edges and a little hair.
_ARCFACE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                         [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float32)
FACE_FRACTION = 0.78
_TEMPLATE_CENTRE = np.array([56.0, 60.0], dtype=np.float32)  # slightly below the eyes: keeps the chin in view
TEMPLATE = ((_ARCFACE_112 - _TEMPLATE_CENTRE) * FACE_FRACTION + np.array([56.0, 56.0])) * (CROP_SIZE / 112.0)

# Margin of the box-only fallback crop, relative to the box's longer side.
BOX_MARGIN = 0.15


def _similarity_from_landmarks(landmarks: np.ndarray) -> np.ndarray | None:
    matrix, _ = cv2.estimateAffinePartial2D(landmarks.astype(np.float32), TEMPLATE.astype(np.float32),
                                            method=cv2.LMEDS)
    return matrix


def _similarity_from_box(box) -> np.ndarray:
    x1, y1, x2, y2 = [float(v) for v in box]
    side = max(x2 - x1, y2 - y1) * (1.0 + 2.0 * BOX_MARGIN)
    side = max(side, 1.0)
    scale = CROP_SIZE / side
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    return np.array([[scale, 0.0, CROP_SIZE / 2.0 - scale * cx],
                     [0.0, scale, CROP_SIZE / 2.0 - scale * cy]], dtype=np.float32)


def _plausible(matrix: np.ndarray | None, box) -> bool:
    """Reject alignments whose scale disagrees wildly with the detector box (degenerate landmarks)."""
    if matrix is None or box is None:
        return matrix is not None
    scale = float(np.hypot(matrix[0, 0], matrix[1, 0]))
    box_side = max(float(box[2]) - float(box[0]), float(box[3]) - float(box[1]), 1.0)
    crop_side_in_image = CROP_SIZE / max(scale, 1e-6)
    return 0.5 <= crop_side_in_image / box_side <= 3.0


def crop_face(image_rgb: np.ndarray, landmarks=None, box=None) -> np.ndarray:
    """Aligned CROP_SIZE x CROP_SIZE RGB uint8 face crop.

    With landmarks (5x2, detector order) the face is rotated upright and scaled to the template; otherwise, or
    when the landmarks are implausible for the box, a square crop around the box with BOX_MARGIN is taken.
    Pixels outside the image are filled by edge replication, so faces at the border keep their context.
    """
    if landmarks is None and box is None:
        raise ValueError("crop_face needs landmarks or a box")
    matrix = None
    if landmarks is not None:
        matrix = _similarity_from_landmarks(np.asarray(landmarks, dtype=np.float32).reshape(5, 2))
        if not _plausible(matrix, box):
            matrix = None
    if matrix is None:
        if box is None:
            raise ValueError("landmarks are degenerate and no box was given")
        matrix = _similarity_from_box(box)
    return cv2.warpAffine(image_rgb, matrix, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def resize_crop(crop_rgb: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """Bring a crop of any size to size x size (crops from other clients may not be pre-sized)."""
    if crop_rgb.shape[:2] == (size, size):
        return crop_rgb
    interpolation = cv2.INTER_AREA if max(crop_rgb.shape[:2]) > size else cv2.INTER_LINEAR
    return cv2.resize(crop_rgb, (size, size), interpolation=interpolation)


def to_model_input(crops_rgb: list[np.ndarray], size: int = CROP_SIZE) -> np.ndarray:
    """Crops (RGB uint8) -> float32 NCHW batch, scaled to [0, 1] and normalised with MEAN / STD."""
    batch = np.stack([resize_crop(c, size) for c in crops_rgb]).astype(np.float32) / 255.0
    batch = (batch - np.asarray(MEAN, dtype=np.float32)) / np.asarray(STD, dtype=np.float32)
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
