"""Training data for the face detector: annotated scenes split by photo, plus crop-set faces, with augmentation.

Scenes (Pascal VOC, boxes only) are split by photo into train / valid / test, seeded (training.splits), and the
split is written to detection/model/scene_split.json so that the benchmarks score the held-out photos. Landmarks,
which the scenes lack, come from the stock detector where it finds the annotated face (its landmarks drive the
classifier's crop, so they must not drift); faces it misses train boxes and scores only.

Crop-set images (one large face each) keep the detector's ability on close-up faces. Their boxes are the stock
detector's, as recorded by training.prepare in the manifest, moved to the scene annotators' head-box convention
(measured by bench.detection_recall: annotated boxes are 1.05x as wide, 0.92x as tall and 0.13 box heights lower).
Only images of the classifier's train split are used, so the crop-set benchmark can hold the others out.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from facemask.core.detector import BGR_MEAN, RetinaFaceDetector
from facemask.core.images import decode_image
from training.annotations import Annotation, greedy_match, load_scenes
from training.detector_model import FLIP_LANDMARKS

# Stock-detector box -> annotators' box (bench/results/detection_recall.md, "box convention").
HEAD_BOX_WIDTH, HEAD_BOX_HEIGHT, HEAD_BOX_SHIFT = 1.05, 0.92, 0.13
# Crop-set photos are drawn at a long side in this range on the 512 px training crop (the shipped model's recipe;
# (128, 640), close-ups that fit the crop, was tried with --crop-long-sides and did not do better on held-out photos).
CROP_LONG_SIDES = (160, 900)
TEACHER_LONG_SIDE, TEACHER_THRESHOLD, TEACHER_IOU = 1024, 0.3, 0.3
MIN_TRAIN_FACE = 6.0  # px at network scale: below this a face can match no prior; its priors are ignored instead
# With --min-visible-share, a face the training crop cuts to less than that share of its box is neither a face nor
# background (RetinaFace's own rule, the default 0, keeps every face whose centre is inside the crop).
MIN_VISIBLE_SHARE = 0.0


@dataclass
class FaceImage:
    """One training image and its faces: boxes (N, 4), landmarks (N, 5, 2) with NaN where unknown."""

    path: Path
    boxes: np.ndarray
    landmarks: np.ndarray
    kind: str  # "scene", "real photo" or "crop"
    long_sides: tuple[int, int] = field(default=(640, 1400))
    labels: tuple[str, ...] = ()
    # Faces neither taught as faces nor as background (e.g. heads no detector sees: the back of a head).
    ignored: np.ndarray | None = None


# --------------------------------------------------------------------------------------------------- split
def scenes_in_split(scenes: Path, split: dict, name: str, limit: int | None = None) -> list[Annotation]:
    names = set(split[name])
    annotations = [a for a in load_scenes(scenes / "images", scenes / "annotations") if a.image.stem in names]
    return annotations[:limit] if limit else annotations


# --------------------------------------------------------------------------------------------------- labels
def _teacher_matches(annotations: list[Annotation], cache: Path, record, what: str) -> dict[str, list]:
    """Per image: per annotated box, record(face) of the stock detector's face matched to it at TEACHER_IOU, or None;
    cached in `cache` (computed once per image)."""
    known = json.loads(cache.read_text()) if cache.is_file() else {}
    todo = [a for a in annotations if a.image.name not in known]
    if todo:
        detector = RetinaFaceDetector(model="stock").prepare(long_side=TEACHER_LONG_SIDE,
                                                             score_threshold=TEACHER_THRESHOLD)
        for annotation in tqdm(todo, desc=f"teacher {what}", unit="img"):
            faces = detector.detect(decode_image(annotation.image))
            matches = greedy_match(annotation.boxes, [1.0] * len(annotation.boxes), [f.box for f in faces],
                                   TEACHER_IOU)
            known[annotation.image.name] = [record(faces[m]) if m >= 0 else None for m in matches]
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(known))
    return known


def teacher_landmarks(annotations: list[Annotation], cache: Path) -> dict[str, list]:
    """Per scene image: per annotated face, the stock detector's 5 landmarks (or None where it finds no face)."""
    return _teacher_matches(annotations, cache, lambda face: face.landmarks.round(2).tolist(), "landmarks")


def scene_samples(annotations: list[Annotation], landmarks: dict[str, list]) -> list[FaceImage]:
    samples = []
    for annotation in annotations:
        points = np.full((len(annotation.boxes), 5, 2), np.nan, dtype=np.float32)
        for index, face_points in enumerate(landmarks[annotation.image.name]):
            if face_points is not None:
                points[index] = face_points
        samples.append(FaceImage(annotation.image, annotation.boxes.copy(), points, "scene",
                                 labels=tuple(annotation.labels)))
    return samples


def teacher_faces(annotations: list[Annotation], cache: Path) -> dict[str, list]:
    """Per photo of a whole-head set: per annotated head, the stock detector's [box, landmarks] for the face it
    finds in it at IoU TEACHER_IOU (the issue's matching for whole-head boxes), or None."""
    return _teacher_matches(annotations, cache,
                            lambda face: [face.box.round(2).tolist(), face.landmarks.round(2).tolist()], "faces")


def real_photo_samples(annotations: list[Annotation], teacher: dict[str, list]) -> list[FaceImage]:
    """Whole-head photos (face-mask-ilc-2021) as detector training data in the scene annotators' box convention.

    Their boxes take in the whole head, so a face the stock detector finds in a head is taught with the detector's
    own box moved to the scene convention (to_head_box, as crop-set faces are) and its landmarks. A head it finds
    no face in (the back of a head, a face hidden by hands or hair) is ignored: taught as background it would punish
    a real face, taught as a face it would make the detector fire on heads, which the classifier cannot judge."""
    samples = []
    for annotation in annotations:
        found = teacher[annotation.image.name]
        boxes = annotation.boxes.copy()
        points = np.full((len(boxes), 5, 2), np.nan, dtype=np.float32)
        ignored = np.ones(len(boxes), dtype=bool)
        for index, face in enumerate(found):
            if face is not None:
                boxes[index] = to_head_box(face[0])
                points[index] = face[1]
                ignored[index] = False
        samples.append(FaceImage(annotation.image, boxes, points, "real photo", labels=tuple(annotation.labels),
                                 ignored=ignored))
    return samples


def to_head_box(box) -> np.ndarray:
    x1, y1, x2, y2 = box
    width, height = (x2 - x1) * HEAD_BOX_WIDTH, (y2 - y1) * HEAD_BOX_HEIGHT
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2 + HEAD_BOX_SHIFT * (y2 - y1)
    return np.array([cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2], dtype=np.float32)


def crop_set_samples(manifest: Path, data_root: Path, split: str = "train",
                     long_sides: tuple[int, int] = CROP_LONG_SIDES) -> list[FaceImage]:
    """Crop-set images of one classifier split that the stock detector labelled (status ok in the manifest)."""
    with open(manifest, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["status"] == "ok" and r["split"] == split
                and not r["group"].startswith("scene:")]
    return [FaceImage(data_root / row["source"], to_head_box(json.loads(row["box"]))[None],
                      np.asarray(json.loads(row["landmarks"]), dtype=np.float32)[None], "crop", long_sides)
            for row in rows]


# --------------------------------------------------------------------------------------------------- augment
def photometric(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Lighting, colour, blur and grey: what differs between a shop camera and a phone photo."""
    image = image.astype(np.float32)
    image = image * rng.uniform(0.6, 1.4) + rng.uniform(-32, 32)  # contrast, brightness
    if rng.random() < 0.5:
        hsv = cv2.cvtColor(np.clip(image, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(-9, 9)) % 180
        hsv[..., 1] *= rng.uniform(0.5, 1.5)
        image = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    if rng.random() < 0.05:
        image = np.repeat(image.mean(axis=2, keepdims=True), 3, axis=2)
    image = np.clip(image, 0, 255).astype(np.uint8)
    if rng.random() < 0.25:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 2.0))
    return image


def augment(sample: FaceImage, image: np.ndarray, size: int, rng: np.random.Generator, train: bool = True,
            flip: bool | None = None, min_visible_share: float = MIN_VISIBLE_SHARE):
    """Rescale (long side drawn from the sample's range), random square crop or pad, flip, photometric noise.

    flip: None flips half of the training samples at random.

    Returns the network input (3, size, size) and the faces in its pixel coordinates.
    """
    height, width = image.shape[:2]
    long_side = rng.uniform(*sample.long_sides) if train else float(np.mean(sample.long_sides))
    scale = long_side / max(height, width)
    image = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                       interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    boxes, points = sample.boxes * scale, sample.landmarks * scale
    ignored = sample.ignored if sample.ignored is not None else np.zeros(len(boxes), dtype=bool)
    height, width = image.shape[:2]
    x0 = int(rng.integers(0, width - size + 1)) if width > size else -int(rng.integers(0, size - width + 1))
    y0 = int(rng.integers(0, height - size + 1)) if height > size else -int(rng.integers(0, size - height + 1))
    canvas = np.empty((size, size, 3), dtype=np.uint8)
    canvas[:] = BGR_MEAN[::-1].astype(np.uint8)  # the mean colour: zero after normalisation, like the padding
    src_x, src_y, dst_x, dst_y = max(x0, 0), max(y0, 0), max(-x0, 0), max(-y0, 0)
    w, h = min(width - src_x, size - dst_x), min(height - src_y, size - dst_y)
    canvas[dst_y:dst_y + h, dst_x:dst_x + w] = image[src_y:src_y + h, src_x:src_x + w]
    offset = np.array([x0, y0], dtype=np.float32)
    boxes, points = boxes - np.tile(offset, 2), points - offset
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    inside = ((centres >= 0) & (centres < size)).all(axis=1)  # RetinaFace's rule: a cut face counts by its centre
    full_area = np.prod(boxes[inside, 2:] - boxes[inside, :2], axis=1).clip(min=1e-6)
    boxes, points, ignored = boxes[inside].clip(0, size), points[inside], ignored[inside]
    cut = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1) / full_area < min_visible_share
    if train:
        canvas = photometric(canvas, rng)
        if rng.random() < 0.5 if flip is None else flip:
            canvas = canvas[:, ::-1]
            boxes = np.stack([size - boxes[:, 2], boxes[:, 1], size - boxes[:, 0], boxes[:, 3]], axis=1)
            points = points[:, FLIP_LANDMARKS] * np.array([-1, 1], dtype=np.float32) + np.array([size, 0],
                                                                                               dtype=np.float32)
    blob = (np.ascontiguousarray(canvas[..., ::-1]).astype(np.float32) - BGR_MEAN).transpose(2, 0, 1)
    sizes = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    has_points = ~np.isnan(points).any(axis=(1, 2))
    target = {"boxes": torch.from_numpy(boxes.astype(np.float32)).reshape(-1, 4),
              "landmarks": torch.from_numpy(np.nan_to_num(points).astype(np.float32)).reshape(-1, 5, 2),
              "has_landmarks": torch.from_numpy(has_points).reshape(-1),
              "ignored": torch.from_numpy((sizes < MIN_TRAIN_FACE) | cut | ignored).reshape(-1)}
    return torch.from_numpy(np.ascontiguousarray(blob)), target


class DetectionDataset(torch.utils.data.Dataset):
    def __init__(self, samples: list[FaceImage], size: int = 512, seed: int = 0, train: bool = True,
                 min_visible_share: float = MIN_VISIBLE_SHARE):
        self.samples, self.size, self.seed, self.train = samples, size, seed, train
        self.min_visible_share = min_visible_share
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        rng = np.random.default_rng((self.seed, self.epoch, index))
        sample = self.samples[index]
        return augment(sample, decode_image(sample.path), self.size, rng, self.train,
                       min_visible_share=self.min_visible_share)


def collate(batch):
    images, targets = zip(*batch)
    return torch.stack(images), list(targets)
