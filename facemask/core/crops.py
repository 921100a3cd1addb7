"""The one place where a face becomes classifier input.

Training data preparation, evaluation and both services import this module, so a model is always served with the
crop geometry and normalisation it was trained with. Two steps:

1. ``crop_face``: full image + 5 landmarks (or a box) -> aligned RGB uint8 crop of CROP_SIZE x CROP_SIZE.
   Done by the detection side; crops travel to the classifier as lossless PNG.
2. ``to_model_input``: crops -> float32 NCHW batch normalised with MEAN / STD.
   Done by the classifier; fastai training uses the same MEAN / STD (see training/data.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

CROP_SIZE = 96
# ImageNet statistics: what fastai's Normalize uses for a ResNet, and what --pretrained weights expect.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

# ArcFace's 5-point template for a 112x112 crop (eyes, nose tip, mouth corners; image-left first). It frames
# eyebrows to lower lip; masks need the whole lower face, so the template is shrunk towards its centre by
# FACE_FRACTION, which leaves margin for the chin, mask edges and a little hair. 0.90 was chosen by measurement
# against 0.62-0.78 (bench/results/classifier_sweep.md): more context did not help the small scene faces, a
# tighter crop gives the mask more of the 96 pixels.
_ARCFACE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                         [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float32)
FACE_FRACTION = 0.90
_TEMPLATE_CENTRE = np.array([56.0, 60.0], dtype=np.float32)  # slightly below the eyes: keeps the chin in view

# Models and services from before the geometry travelled in the model's metadata and /info were all trained and
# served at this face fraction.
LEGACY_FACE_FRACTION = 0.78
# Margin of the box-only fallback crop, relative to the box's longer side, at LEGACY_FACE_FRACTION (scaled with the
# face fraction, so the box crop frames the face as the landmark crop does).
BOX_MARGIN = 0.15


@dataclass(frozen=True)
class CropGeometry:
    """Side of the square crop in pixels and the share of it the landmark template spans (less: more context).

    Both centre on the same point of the face, so a crop of one geometry is a centred crop-and-resize of any crop
    with more context (``reframe``): one wide prepared folder serves every geometry a training sweep tries.
    """

    size: int = CROP_SIZE
    face_fraction: float = FACE_FRACTION

    def __post_init__(self):
        if self.size < 16 or not 0.3 <= self.face_fraction <= 1.2:
            raise ValueError(f"implausible crop geometry {self}")

    def template(self) -> np.ndarray:
        return ((_ARCFACE_112 - _TEMPLATE_CENTRE) * self.face_fraction + np.array([56.0, 56.0])) * (self.size / 112.0)


SERVED = CropGeometry()
TEMPLATE = SERVED.template()


def _similarity_from_landmarks(landmarks: np.ndarray, geometry: CropGeometry) -> np.ndarray | None:
    matrix, _ = cv2.estimateAffinePartial2D(landmarks.astype(np.float32), geometry.template().astype(np.float32),
                                            method=cv2.LMEDS)
    return matrix


def _similarity_from_box(box, geometry: CropGeometry) -> np.ndarray:
    x1, y1, x2, y2 = [float(v) for v in box]
    side = max(x2 - x1, y2 - y1) * (1.0 + 2.0 * BOX_MARGIN) * LEGACY_FACE_FRACTION / geometry.face_fraction
    side = max(side, 1.0)
    scale = geometry.size / side
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    return np.array([[scale, 0.0, geometry.size / 2.0 - scale * cx],
                     [0.0, scale, geometry.size / 2.0 - scale * cy]], dtype=np.float32)


def _plausible(matrix: np.ndarray | None, box, geometry: CropGeometry) -> bool:
    """Reject alignments whose scale disagrees wildly with the detector box (degenerate landmarks)."""
    if matrix is None or box is None:
        return matrix is not None
    scale = float(np.hypot(matrix[0, 0], matrix[1, 0]))
    box_side = max(float(box[2]) - float(box[0]), float(box[3]) - float(box[1]), 1.0)
    crop_side_in_image = geometry.size / max(scale, 1e-6) * geometry.face_fraction / LEGACY_FACE_FRACTION
    return 0.5 <= crop_side_in_image / box_side <= 3.0


def crop_face(image_rgb: np.ndarray, landmarks=None, box=None, geometry: CropGeometry = SERVED) -> np.ndarray:
    """Aligned geometry.size x geometry.size RGB uint8 face crop (the served geometry unless told otherwise).

    With landmarks (5x2, detector order) the face is rotated upright and scaled to the template; otherwise, or
    when the landmarks are implausible for the box, a square crop around the box with BOX_MARGIN is taken.
    Pixels outside the image are filled by edge replication, so faces at the border keep their context.
    """
    if landmarks is None and box is None:
        raise ValueError("crop_face needs landmarks or a box")
    matrix = None
    if landmarks is not None:
        matrix = _similarity_from_landmarks(np.asarray(landmarks, dtype=np.float32).reshape(5, 2), geometry)
        if not _plausible(matrix, box, geometry):
            matrix = None
    if matrix is None:
        if box is None:
            raise ValueError("landmarks are degenerate and no box was given")
        matrix = _similarity_from_box(box, geometry)
    return cv2.warpAffine(image_rgb, matrix, (geometry.size, geometry.size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def reframe(crop_rgb: np.ndarray, source: CropGeometry, target: CropGeometry) -> np.ndarray:
    """A crop of `source` geometry as `target` would have cut it: centred crop to the target's context, then
    resize. The target must not ask for more context than the source has."""
    if source == target and crop_rgb.shape[0] == source.size:
        return crop_rgb
    side = crop_rgb.shape[0] * source.face_fraction / target.face_fraction
    if side > crop_rgb.shape[0] + 0.5:
        raise ValueError(f"a crop of {source} holds less context than {target} needs")
    # The same pixel convention as crop_face's warp, so reframing a wide crop matches cutting the narrow one directly.
    scale = target.size / side
    offset = target.size / 2.0 - scale * crop_rgb.shape[0] / 2.0
    matrix = np.array([[scale, 0.0, offset], [0.0, scale, offset]], dtype=np.float32)
    return cv2.warpAffine(crop_rgb, matrix, (target.size, target.size), flags=cv2.INTER_LINEAR,
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
    normalised = (batch - np.asarray(MEAN, dtype=np.float32)) / np.asarray(STD, dtype=np.float32)
    return np.ascontiguousarray(normalised.transpose(0, 3, 1, 2))
