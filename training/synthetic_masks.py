"""Masks drawn onto unmasked faces, placed by the detector's 5 landmarks: worn correctly, worn wrong, or a hand.

Real photos hold few faces with a mask under the nose or on the chin (123 in the whole scene set), so most of the
`incorrect` class is made here: a mask shape is defined once in the ArcFace 112x112 landmark frame, textured
(plain colours, surgical pleats, stripes, dots, checks, noise; shaded and lit like the face) and warped onto the
face with the affine map that takes the template landmarks onto the detected ones, so it follows roll, yaw and
scale. Drawing happens in the full photo before the serving crop is taken, so a small face gets a small, as-blurred
mask. Hands over the mouth, in the face's own skin colour, are `without_mask` negatives.

Nothing here is licensed from elsewhere: shapes and textures are drawn with OpenCV from random numbers.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from facemask.core.classes import INCORRECT, WITH_MASK, WITHOUT_MASK
from facemask.core.crops import SERVED, CropGeometry, crop_face
from facemask.core.images import decode_image
from training.manifest import manifest_row, save_crop

# ArcFace 5-point template, 112x112 (image-left eye first, as the detector's landmarks).
_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                      [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float32)

# Where the top edge of the mask sits in the template frame, per kind (nose tip y 71.7, mouth y 92.3).
TOP_EDGE = {"worn": (57.0, 64.0), "below_nose": (77.0, 82.0), "on_chin": (95.0, 100.0)}
CHIN = {"worn": (124.0, 134.0), "below_nose": (126.0, 136.0), "on_chin": (134.0, 146.0)}  # bottom edge
KIND_LABEL = {"worn": WITH_MASK, "below_nose": INCORRECT, "on_chin": INCORRECT, "hand": WITHOUT_MASK}
CANVAS_FRAME = (-12.0, 30.0, 124.0, 150.0)  # x0, y0, x1, y1 of the template frame that mask textures cover

PALETTE = [  # RGB: surgical blues and greens, white, black, greys, and common cloth colours
    (140, 190, 225), (120, 175, 215), (160, 210, 200), (245, 245, 245), (230, 232, 236), (25, 25, 28),
    (50, 52, 58), (120, 122, 128), (30, 40, 90), (200, 60, 60), (230, 160, 180), (90, 130, 70), (200, 180, 140),
    (240, 200, 60), (110, 70, 150), (20, 110, 160), (170, 40, 90), (60, 60, 60),
]


def _template_to_image(landmarks: np.ndarray) -> np.ndarray:
    """2x3 affine (least squares on 5 points) from the template frame to the image: follows yaw foreshortening."""
    source = np.hstack([_TEMPLATE, np.ones((5, 1), np.float32)])
    solution, *_ = np.linalg.lstsq(source, np.asarray(landmarks, np.float32).reshape(5, 2), rcond=None)
    return solution.T.astype(np.float32)


def _mask_polygon(kind: str, rng: np.random.Generator, nose_y: float) -> np.ndarray:
    """Outline of a mask in the template frame, jittered so no two masks have the same shape.

    nose_y: where this face's nose tip lands in the template frame (the 5-point fit is not exact on turned or
    tilted heads); a mask worn wrong always leaves it uncovered.
    """
    top_centre = rng.uniform(*TOP_EDGE[kind])
    if kind != "worn":
        top_centre = max(top_centre, nose_y + 7.0)
    side_drop = rng.uniform(3.0, 9.0)
    half_width = rng.uniform(40.0, 47.0) * (0.85 if kind == "on_chin" else 1.0)  # narrower jaw
    chin = rng.uniform(*CHIN[kind])
    style = rng.choice(["surgical", "cloth", "cone"])
    points = [(56 - half_width, top_centre + side_drop), (56 - 0.45 * half_width, top_centre + side_drop * 0.3),
              (56, top_centre), (56 + 0.45 * half_width, top_centre + side_drop * 0.3),
              (56 + half_width, top_centre + side_drop)]
    low_side = max(top_centre + side_drop + 14.0, 108.0 if style == "surgical" else 102.0)
    points += [(56 + half_width * 0.98, low_side), (56 + half_width * 0.62, chin - 8.0),
               (56, chin), (56 - half_width * 0.62, chin - 8.0), (56 - half_width * 0.98, low_side)]
    polygon = np.array(points, np.float32) + rng.normal(0.0, 1.2, (len(points), 2)).astype(np.float32)
    return polygon


def _texture(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """RGB float texture in [0, 255]: a base colour with an optional pattern."""
    base = np.array(PALETTE[rng.integers(len(PALETTE))] if rng.random() < 0.7
                    else rng.integers(0, 256, 3), np.float32)
    texture = np.ones((height, width, 3), np.float32) * base
    pattern = rng.choice(["plain", "plain", "pleats", "stripes", "dots", "checks", "noise"])
    second = np.array(PALETTE[rng.integers(len(PALETTE))], np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    if pattern == "pleats":  # horizontal folds of a surgical mask: darker lines
        period = height / rng.uniform(5.0, 8.0)
        texture *= (0.85 + 0.15 * np.abs(np.sin(np.pi * yy / period)))[..., None]
    elif pattern == "stripes":
        angle, period = rng.uniform(0, np.pi), rng.uniform(6.0, 20.0) * width / 120
        band = (np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period) > 0)[..., None]
        texture = np.where(band, texture, second)
    elif pattern == "dots":
        period = rng.uniform(8.0, 18.0) * width / 120
        radius = period * rng.uniform(0.15, 0.35)
        dx, dy = (xx % period) - period / 2, (yy % period) - period / 2
        texture = np.where((dx ** 2 + dy ** 2 < radius ** 2)[..., None], second, texture)
    elif pattern == "checks":
        period = rng.uniform(8.0, 20.0) * width / 120
        checks = ((xx // period) + (yy // period)) % 2 == 0
        texture = np.where(checks[..., None], texture, 0.6 * texture + 0.4 * second)
    elif pattern == "noise":
        small = rng.normal(0.0, 40.0, (max(2, height // 12), max(2, width // 12), 3)).astype(np.float32)
        texture += cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    texture += rng.normal(0.0, rng.uniform(2.0, 8.0), texture.shape).astype(np.float32)  # fabric grain
    return np.clip(texture, 0, 255)


def _shading(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Curvature (darker towards the cheeks) and a light direction, as a per-pixel brightness factor."""
    xx = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :]
    yy = np.linspace(-1.0, 1.0, height, dtype=np.float32)[:, None]
    curvature = 1.0 - rng.uniform(0.1, 0.35) * xx ** 2
    light = 1.0 + rng.uniform(-0.25, 0.25) * xx + rng.uniform(-0.15, 0.15) * yy
    return (curvature * light)[..., None]


def _hand_polygons(rng: np.random.Generator) -> list[np.ndarray]:
    """Fingers laid across the mouth, as rotated ellipses in the template frame."""
    angle = rng.uniform(-35.0, 35.0)
    centre = np.array([56.0 + rng.uniform(-10, 10), rng.uniform(88.0, 100.0)])
    polygons = []
    for index in range(rng.integers(3, 5)):
        offset = np.array([0.0, (index - 1.5) * rng.uniform(8.0, 10.0)])
        rotation = cv2.getRotationMatrix2D((0, 0), angle, 1.0)[:, :2]
        finger_centre = centre + rotation @ offset
        length = rng.uniform(32.0, 44.0)
        polygons.append(np.asarray(cv2.ellipse2Poly((int(finger_centre[0] * 8), int(finger_centre[1] * 8)),
                                                    (int(length * 8), int(rng.uniform(4.5, 6.0) * 8)), int(angle),
                                                    0, 360, 10), dtype=np.float32) / 8.0)
    return polygons


def _skin_colour(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Median colour of the forehead and cheeks: hands in the same light as the face."""
    samples = np.array([[56, 40], [30, 75], [82, 75]], np.float32)
    points = samples @ matrix[:, :2].T + matrix[:, 2]
    height, width = image.shape[:2]
    pixels = [image[int(np.clip(y, 0, height - 1)), int(np.clip(x, 0, width - 1))] for x, y in points]
    return np.median(np.array(pixels, np.float32), axis=0)


def draw_mask(image_rgb: np.ndarray, landmarks, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A copy of the image with a mask (kind in TOP_EDGE) or a hand ("hand") drawn on the face of these landmarks."""
    if kind not in KIND_LABEL:
        raise ValueError(f"unknown kind {kind!r}: one of {sorted(KIND_LABEL)}")
    matrix = _template_to_image(np.asarray(landmarks, np.float32))
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))  # image pixels per template unit
    # Texture resolution close to the face's own, so the warp neither aliases nor sharpens a small face's mask.
    pixels_per_unit = float(np.clip(scale, 0.4, 4.0))
    x0, y0, x1, y1 = CANVAS_FRAME
    width, height = int((x1 - x0) * pixels_per_unit), int((y1 - y0) * pixels_per_unit)
    to_canvas = np.array([[pixels_per_unit, 0, -x0 * pixels_per_unit], [0, pixels_per_unit, -y0 * pixels_per_unit]],
                         np.float32)
    alpha = np.zeros((height, width), np.float32)
    if kind == "hand":
        colour = _skin_colour(image_rgb, matrix) * rng.uniform(0.85, 1.1)
        texture = np.ones((height, width, 3), np.float32) * colour
        texture += rng.normal(0.0, 3.0, texture.shape).astype(np.float32)
        for polygon in _hand_polygons(rng):
            cv2.fillPoly(alpha, [np.round(polygon @ to_canvas[:, :2].T + to_canvas[:, 2]).astype(np.int32)], 1.0)
        texture *= _shading(height, width, rng) ** 0.5
    else:
        inverse = cv2.invertAffineTransform(matrix)
        nose_y = float(inverse[1, :2] @ np.asarray(landmarks, np.float32).reshape(5, 2)[2] + inverse[1, 2])
        polygon = _mask_polygon(kind, rng, nose_y)
        cv2.fillPoly(alpha, [np.round(polygon @ to_canvas[:, :2].T + to_canvas[:, 2]).astype(np.int32)], 1.0)
        texture = _texture(height, width, rng) * _shading(height, width, rng)
        if rng.random() < 0.6:  # ear loops from the mask's upper corners towards the ears
            for side in (0, 4):
                start = polygon[side] @ to_canvas[:, :2].T + to_canvas[:, 2]
                end = np.array([(-8.0 if side == 0 else 120.0), polygon[side][1] - 6.0]) * pixels_per_unit \
                    + to_canvas[:, 2]
                cv2.line(alpha, tuple(np.round(start).astype(int)), tuple(np.round(end).astype(int)), 1.0,
                         max(1, int(round(pixels_per_unit))))
        # Lit like the face it sits on: a dim photo gets a dim mask.
        face_brightness = float(np.mean(_skin_colour(image_rgb, matrix))) / 150.0
        texture *= float(np.clip(face_brightness, 0.35, 1.25)) ** 0.7
    feather = max(1, int(round(pixels_per_unit * 1.2))) * 2 + 1
    alpha = np.asarray(cv2.GaussianBlur(alpha, (feather, feather), 0), dtype=np.float32)

    canvas_to_image = _compose(matrix, np.linalg.inv(np.vstack([to_canvas, [0, 0, 1]]))[:2])
    size = (image_rgb.shape[1], image_rgb.shape[0])
    warped = cv2.warpAffine(np.clip(texture, 0, 255), canvas_to_image, size, flags=cv2.INTER_LINEAR)
    warped_alpha = cv2.warpAffine(alpha, canvas_to_image, size, flags=cv2.INTER_LINEAR)[..., None]
    blended = image_rgb.astype(np.float32) * (1.0 - warped_alpha) + warped * warped_alpha
    return np.clip(blended, 0, 255).astype(np.uint8)


def _compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """2x3 affine of outer(inner(x))."""
    return (np.vstack([outer, [0, 0, 1]]) @ np.vstack([inner, [0, 0, 1]]))[:2].astype(np.float32)


def choose_kind(rng: np.random.Generator, hands: bool = True) -> str:
    """Which synthetic face to make from an unmasked one: mostly the rare `incorrect` class."""
    kinds, weights = ["worn", "below_nose", "on_chin", "hand"], [0.3, 0.35, 0.2, 0.15]
    if not hands:
        kinds, weights = kinds[:3], weights[:3]
    return str(rng.choice(kinds, p=np.array(weights) / sum(weights)))


SYNTHETIC_DATASET = "synthetic_masks"


def synthetic_rows(rows: list[dict], image_roots: dict[str, Path], out: Path, seed: int,
                   per_face: int = 1, geometry: CropGeometry = SERVED) -> list[dict]:
    """Manifest rows for masks drawn on every usable unmasked face of `rows`, per_face variants each.

    Each synthetic face keeps its source face's group and split, so synthetic test faces come from held-out people
    only and no person is on both sides of the split. image_roots maps a row's dataset to the folder its `source`
    is relative to (a scene row's source is "photo.jpg#index").
    """
    rng = np.random.default_rng(seed)
    sources = [r for r in rows if r["status"] == "ok" and r["label"] == WITHOUT_MASK and r["landmarks"]
               and r["dataset"] in image_roots]
    sources.sort(key=lambda r: r["source"])  # one decode per photo, and the same order every run
    made, cached_path, image = [], None, None
    for row in tqdm(sources, desc="synthetic masks", unit="face"):
        path = Path(image_roots[row["dataset"]]) / row["source"].split("#")[0]
        if path != cached_path:
            cached_path, image = path, decode_image(path)
        assert image is not None  # decoded for this photo just above, or for the previous face of it
        landmarks = np.array(json.loads(row["landmarks"]), np.float32)
        box = json.loads(row["box"]) if row["box"] else None
        for variant in range(per_face):
            kind = choose_kind(rng)
            label = KIND_LABEL[kind]
            drawn = draw_mask(image, landmarks, kind, rng)
            # "photo.jpg#2" -> "photo_2": each face of a scene photo keeps its own name (the suffix is not ".jpg_2").
            photo, _, face_index = row["source"].partition("#")
            name = Path(photo).stem + (f"_{face_index}" if face_index else "") + f"_{kind}{variant}"
            synthetic = manifest_row(source=f"{row['source']}~{kind}{variant}", label=label, status="ok",
                                     box=row["box"], det_side=row["det_side"], group=row["group"],
                                     split=row["split"], dataset=SYNTHETIC_DATASET)
            save_crop(out, Path("crops") / label / f"synth_{row['dataset']}_{name}.png",
                      crop_face(drawn, landmarks, box, geometry), landmarks,
                      float(row["det_score"] or 1.0), synthetic)
            made.append(synthetic)
    return made
