"""Face-detector recall against input scale and score threshold, on the crop set and on annotated scenes.

    python -m bench.detection_recall                  # full data, all sweeps (~15 min on 2 cores)
    python -m bench.detection_recall --quick          # 150 scenes + 100 crops per class (~2 min)
    python -m bench.detection_recall --part scenes --limit 300

Crop set (ImageFolder): per class, the fraction of images in which at least one face is found.
Scenes (Pascal VOC): per-class recall at IoU 0.5 and 0.3 (greedy one-to-one matching, highest score first), false
positives per image (detections matched to no ground truth at IoU 0.3), and recall at IoU 0.5 with detector boxes
rescaled about their centre, or fitted to the annotators' box convention (they boxed heads; RetinaFace boxes faces).

The detector runs once per image and long_side, at the lowest threshold; higher thresholds are applied afterwards.
That equals a run at the higher threshold: greedy NMS lets only higher-scoring boxes suppress a box.
"""
from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from bench.common import (
    CROPS_DIR,
    Report,
    add_scene_arguments,
    command_line,
    load_image_folder,
    long_side_name,
    plot_sweep,
    run_name,
    scenes_from_args,
)
from facemask.core.boxes import centre, widths_heights
from facemask.core.detector import (
    DEFAULT_LONG_SIDE,
    DEFAULT_SCORE_THRESHOLD,
    DetectOptions,
    RetinaFaceDetector,
    boxes_and_scores,
    parse_long_side,
)
from facemask.core.images import decode_image
from facemask.core.paths import REPO_ROOT
from facemask.core.settings import Settings
from training.annotations import (
    FALSE_POSITIVE_IOU,
    IOU_THRESHOLDS,
    SCENE_CLASSES,
    greedy_match,
    load_scenes,
    scene_recall,
    subsample,
)

CROP_LONG_SIDES = (None, 320, 640, 1024)
SCENE_LONG_SIDES = (None, 640, 1024, 1280, 1600)
THRESHOLDS = (0.3, 0.5, 0.7, 0.9)
EXPANSIONS = (1.0, 1.1, 1.2, 1.3)
QUICK_SCENES, QUICK_CROPS_PER_CLASS = 150, 100
VIDEO_FRAME = (640, 480)


def run_detector(detector: RetinaFaceDetector, paths: list, long_sides: list, threshold: float, desc: str):
    """Boxes and scores per long_side per image, and median detection ms per image per long_side."""
    found: dict[int, list] = {side: [] for side in long_sides}
    elapsed: dict[int, list[float]] = {side: [] for side in long_sides}
    for index, path in enumerate(tqdm(paths, desc=desc, unit="img")):
        image = decode_image(path)
        for side in long_sides:
            options = DetectOptions(long_side=side, score_threshold=threshold)
            if index == 0:
                detector.detect(image, options)  # session warm-up, kept out of the timings
            start = time.perf_counter()
            faces = detector.detect(image, options)
            elapsed[side].append((time.perf_counter() - start) * 1e3)
            found[side].append(boxes_and_scores(faces))
    # Median, not mean: other work on a shared machine shows up as outliers, not as a shift of the median.
    return found, {side: float(np.median(ms)) for side, ms in elapsed.items()}


def frame_timing(detector: RetinaFaceDetector, image: np.ndarray, long_sides: list, repeats: int = 20) -> dict:
    """(median, best) detection ms of one video-sized frame per long_side (upscaling on, as in the service).

    The best run is the cost on an idle machine; the median includes whatever else the machine was doing.
    """
    frame = cv2.resize(image, VIDEO_FRAME, interpolation=cv2.INTER_AREA)
    timings = {}
    for side in long_sides:
        options = DetectOptions(long_side=side, score_threshold=DEFAULT_SCORE_THRESHOLD)
        detector.detect(frame, options)
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            detector.detect(frame, options)
            runs.append((time.perf_counter() - start) * 1e3)
        timings[side] = (float(np.median(runs)), float(np.min(runs)))
    return timings


# ----------------------------------------------------------------------------------------------- crop set
def crop_found_fraction(detections: list, threshold: float) -> float:
    return float(np.mean([len(scores) > 0 and scores.max() >= threshold for _, scores in detections]))


def crop_rows(found_by_class: dict, ms: dict, long_sides: list, thresholds: list) -> list[dict]:
    rows = []
    for side in long_sides:
        for threshold in thresholds:
            row = {"long_side": long_side_name(side), "threshold": threshold}
            row.update({label: crop_found_fraction(found[side], threshold) for label, found in found_by_class.items()})
            row["all"] = crop_found_fraction([d for found in found_by_class.values() for d in found[side]], threshold)
            rows.append({**row, "ms/img": ms[side]})
    return rows


def detector_training_crops(manifest: Path) -> set[str]:
    """Crop-set images (relative paths) that detector training may use: the classifier's train split."""
    if not manifest.is_file():
        raise SystemExit(f"error: {manifest} not found: it tells which crop-set images detector training used "
                         "(python -m training.prepare writes it)")
    with open(manifest, newline="") as handle:
        return {row["source"] for row in csv.DictReader(handle) if row["split"] == "train"}


def benchmark_crops(args, detector: RetinaFaceDetector, report: Report) -> None:
    images = load_image_folder(args.crops)
    if args.split != "all":
        seen = detector_training_crops(args.crop_manifest)
        images = {label: [p for p in paths if str(p.relative_to(args.crops)) not in seen]
                  for label, paths in images.items()}
        report.note(f"Crop set: only images outside the classifier's train split in {args.crop_manifest} "
                    "(the detector never trained on them).")
    images = {label: subsample(paths, args.crop_limit, args.seed) for label, paths in images.items()}
    long_sides = list(dict.fromkeys([*args.crop_long_sides, DEFAULT_LONG_SIDE]))
    thresholds = sorted({*args.thresholds, DEFAULT_SCORE_THRESHOLD})
    paths = [path for label_paths in images.values() for path in label_paths]
    found, ms = run_detector(detector, paths, long_sides, min(thresholds), "crops")
    found_by_class, start = {}, 0
    for label, label_paths in images.items():
        found_by_class[label] = {side: found[side][start:start + len(label_paths)] for side in long_sides}
        start += len(label_paths)

    counts = ", ".join(f"{label} {len(p)}" for label, p in images.items())
    defaults = crop_rows(found_by_class, ms, [DEFAULT_LONG_SIDE], [DEFAULT_SCORE_THRESHOLD])
    report.table("Crop set: images with at least one face, service defaults", defaults,
                 f"{args.crops.name}: {counts} images. Defaults: long_side={DEFAULT_LONG_SIDE}, "
                 f"threshold={DEFAULT_SCORE_THRESHOLD}.")
    rows = crop_rows(found_by_class, ms, args.crop_long_sides, args.thresholds)
    report.table("Crop set: images with at least one face, sweep", rows, "ms/img: median detection time per image.")

    sides = args.crop_long_sides
    lookup = {(r["long_side"], r["threshold"]): r for r in rows}

    def series(column, threshold):
        return [lookup[(long_side_name(s), threshold)][column] for s in sides]

    plot_path = plot_sweep(
        args.out_dir / f"{report.name}_crops.png", f"Crop set: images with a face found ({counts})", sides,
        [ms[s] for s in sides], "fraction of images with a face",
        by_scale=[(f"{label} thr {t}", series(label, t), f"C{i}o" + ("-" if t == DEFAULT_SCORE_THRESHOLD else "--"))
                  for i, label in enumerate(found_by_class)
                  for t in dict.fromkeys([DEFAULT_SCORE_THRESHOLD, max(args.thresholds)]) if t in args.thresholds],
        by_time=[(f"all thr {t}", series("all", t), f"C{i}o-") for i, t in enumerate(args.thresholds)])
    report.figure(plot_path.name, "crop set: found fraction against long_side and time")


# ----------------------------------------------------------------------------------------------- scenes
FACE_SIZE_BINS = (0, 10, 15, 20, 30, 50, 100000)


def recall_by_size(detections: list, annotations: list, threshold: float) -> list[dict]:
    """Recall at IoU 0.5 and 0.3 per bin of annotated face size: where the misses are."""
    face_sizes: list[float] = []
    hits: dict[float, list[bool]] = {0.5: [], 0.3: []}
    for (boxes, scores), annotation in zip(detections, annotations):
        keep = scores >= threshold
        face_sizes += list(widths_heights(annotation.boxes).min(axis=1))
        for iou in hits:
            matches = greedy_match(boxes[keep], scores[keep], annotation.boxes, iou)
            found = set(matches[matches >= 0].tolist())
            hits[iou] += [index in found for index in range(len(annotation.boxes))]
    size_of_face = np.array(face_sizes)
    rows = []
    for low, high in zip(FACE_SIZE_BINS, FACE_SIZE_BINS[1:]):
        in_bin = (size_of_face >= low) & (size_of_face < high)
        name = f"{low}-{high} px" if high < FACE_SIZE_BINS[-1] else f">= {low} px"
        rows.append({"face size": name, "faces": int(in_bin.sum()),
                     **{f"recall@{iou}": float(np.mean(np.array(h)[in_bin])) if in_bin.any() else float("nan")
                        for iou, h in hits.items()}})
    return rows


def box_geometry(detections: list, annotations: list, threshold: float) -> dict:
    """How annotated boxes differ from the detector boxes they match at IoU 0.3: median size ratios and shift."""
    ratios, shifts = [], []
    for (boxes, scores), annotation in zip(detections, annotations):
        keep = scores >= threshold
        matches = greedy_match(boxes[keep], scores[keep], annotation.boxes, FALSE_POSITIVE_IOU)
        for det, gt in zip(boxes[keep][matches >= 0], annotation.boxes[matches[matches >= 0]]):
            size = widths_heights(det)
            ratios.append(widths_heights(gt) / size)
            shifts.append((centre(gt) - centre(det)) / size)
    if not ratios:
        return {}
    count, ratios, shifts = len(ratios), np.median(ratios, axis=0), np.median(shifts, axis=0)
    return {"matches": count, "width_ratio": float(ratios[0]), "height_ratio": float(ratios[1]),
            "centre_dx": float(shifts[0]), "centre_dy": float(shifts[1])}


def recall_row(result: dict, classes: list[str], ious=IOU_THRESHOLDS) -> dict:
    short = {"mask_weared_incorrect": "incorrect"}
    return {f"{short.get(label, label)}@{iou}": result[f"recall@{iou}"][label]
            for iou in ious for label in [*classes, "all"]}


def benchmark_scenes(args, detector: RetinaFaceDetector, report: Report) -> None:
    annotations = scenes_from_args(args)
    long_sides = args.scene_long_sides
    thresholds = sorted({*args.thresholds, DEFAULT_SCORE_THRESHOLD, args.expansion_threshold})
    found, ms = run_detector(detector, [a.image for a in annotations], long_sides, min(thresholds), "scenes")
    classes = [label for label in SCENE_CLASSES if any(label in a.labels for a in annotations)]
    counts = {label: sum(a.labels.count(label) for a in annotations) for label in classes}
    sizes = np.array([max(a.width, a.height) for a in annotations])
    report.note(f"Scenes: {len(annotations)} images from {args.images} (median long side {np.median(sizes):.0f} "
                f"px), ground truth: " + ", ".join(f"{label} {n}" for label, n in counts.items()) + ".")

    plain = {(side, t): scene_recall(found[side], annotations, t) for side in long_sides for t in thresholds}
    rows = [{"long_side": long_side_name(side), "threshold": t, **recall_row(plain[(side, t)], classes),
             "FP/img": plain[(side, t)]["fp_per_image"], "ms/img": ms[side]}
            for side in long_sides for t in args.thresholds]
    report.table("Scenes: recall at IoU 0.5 and 0.3, false positives per image (unmatched at IoU 0.3)", rows,
                 "ms/img: median detection time per image.")
    if DEFAULT_LONG_SIDE in long_sides:
        report.table(f"Scenes: recall by face size, long_side {DEFAULT_LONG_SIDE}, threshold {DEFAULT_SCORE_THRESHOLD}",
                     recall_by_size(found[DEFAULT_LONG_SIDE], annotations, DEFAULT_SCORE_THRESHOLD),
                     "Face size: the shorter side of the annotated box in the original image, px.")

    # Annotators' boxes follow their own convention; measure it, then see how much IoU-0.5 recall it costs.
    t_box = args.expansion_threshold
    geometry_side = DEFAULT_LONG_SIDE if DEFAULT_LONG_SIDE in long_sides else long_sides[-1]
    geometry = box_geometry(found[geometry_side], annotations, t_box)
    transforms = {f"x{s}": (s, s, 0.0) for s in args.expansions}
    if geometry:
        transforms["fitted"] = (geometry["width_ratio"], geometry["height_ratio"], geometry["centre_dy"])
        report.note(f"Annotated vs detector box ({geometry['matches']} matches at IoU 0.3, long_side "
                    f"{long_side_name(geometry_side)}, threshold {t_box}): median width ratio "
                    f"{geometry['width_ratio']:.2f}, height ratio {geometry['height_ratio']:.2f}, centre shift dx "
                    f"{geometry['centre_dx']:+.2f}, dy {geometry['centre_dy']:+.2f} detector box sizes "
                    "(+ = right/down). 'fitted' below applies these to detector boxes (fitted on the same scenes).")
    boxed = {(side, name): scene_recall(found[side], annotations, t_box, transform, iou_thresholds=(0.5, 0.3))
             for side in long_sides for name, transform in transforms.items()}
    box_rows = [{"long_side": long_side_name(side), "boxes": name,
                 **recall_row(boxed[(side, name)], classes, ious=(0.5,)), "FP/img": boxed[(side, name)]["fp_per_image"]}
                for side in long_sides for name in transforms]
    best = {side: max((n for n in transforms if n != "fitted"), key=lambda n: boxed[(side, n)]["recall@0.5"]["all"])
            for side in long_sides}
    report.table(f"Scenes: box convention, recall at IoU 0.5 with detector boxes scaled about their centre "
                 f"(threshold {t_box})", box_rows, "Best isotropic expansion per long_side: " + ", ".join(
                     f"{long_side_name(side)}: {n} (all@0.5 {boxed[(side, n)]['recall@0.5']['all']:.3f})"
                     for side, n in best.items()) + ".")

    benchmark_frame(args, detector, report)
    report.data["scenes"] = {
        "images": len(annotations), "ground_truth": counts, "box_geometry": geometry, "ms_per_image": ms,
        "grid": [{"long_side": long_side_name(side), "threshold": t, **r} for (side, t), r in plain.items()],
        "box_convention": [{"long_side": long_side_name(side), "boxes": name, "transform": transforms[name], **r}
                           for (side, name), r in boxed.items()]}

    t_plot = DEFAULT_SCORE_THRESHOLD
    plot_path = plot_sweep(
        args.out_dir / f"{report.name}_scenes.png",
        f"Scenes ({len(annotations)} images): recall (threshold {t_plot} on the left)", long_sides,
        [ms[s] for s in long_sides], "recall",
        by_scale=[(f"{label} IoU {iou}", [plain[(s, t_plot)][f"recall@{iou}"][label] for s in long_sides],
                   f"C{i}o" + ("-" if iou == 0.5 else "--"))
                  for i, label in enumerate([*classes, "all"]) for iou in IOU_THRESHOLDS],
        by_time=[(f"all IoU 0.5 thr {t}", [plain[(s, t)]["recall@0.5"]["all"] for s in long_sides], f"C{i}o-")
                 for i, t in enumerate(args.thresholds)]
        + [(f"all IoU 0.3 thr {t_plot}", [plain[(s, t_plot)]["recall@0.3"]["all"] for s in long_sides], "ks--")])
    report.figure(plot_path.name, "scenes: recall against long_side and time")


def benchmark_frame(args, detector: RetinaFaceDetector, report: Report, image_path: Path | None = None) -> None:
    image_path = image_path or load_scenes(args.images, args.annotations)[0].image
    sides = list(dict.fromkeys([*args.crop_long_sides, *args.scene_long_sides]))
    frame_ms = frame_timing(detector, decode_image(image_path), sides)
    report.table(f"Detection time of one {VIDEO_FRAME[0]}x{VIDEO_FRAME[1]} frame (ms: median and best of 20)",
                 [{"long_side": long_side_name(side), "ms": frame_ms[side][0], "best ms": frame_ms[side][1]}
                  for side in sides],
                 f"{image_path.name} resized to {VIDEO_FRAME[0]}x{VIDEO_FRAME[1]}; native = its own 640 px, larger "
                 "long_side values upscale it.")
    report.data["frame_ms"] = {long_side_name(side): {"median": ms[0], "best": ms[1]} for side, ms in frame_ms.items()}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("crops", "scenes", "frame", "all"), default="all",
                        help="frame: only the video-frame timing (cheap to repeat on a quiet machine)")
    parser.add_argument("--crops", type=Path, default=CROPS_DIR, help="ImageFolder of face images")
    parser.add_argument("--crop-manifest", type=Path, default=REPO_ROOT / "data" / "prepared" / "manifest.csv",
                        help="with --split: crop-set images in this manifest's train split are left out")
    add_scene_arguments(parser)
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_SCENES} scenes and {QUICK_CROPS_PER_CLASS} crops per class unless --limit")
    parser.add_argument("--crop-long-sides", type=parse_long_side, nargs="+", default=list(CROP_LONG_SIDES),
                        help="'none' = native size")
    parser.add_argument("--scene-long-sides", type=parse_long_side, nargs="+", default=list(SCENE_LONG_SIDES))
    parser.add_argument("--thresholds", type=float, nargs="+", default=list(THRESHOLDS))
    parser.add_argument("--expansions", type=float, nargs="+", default=list(EXPANSIONS))
    parser.add_argument("--expansion-threshold", type=float, default=DEFAULT_SCORE_THRESHOLD,
                        help="score threshold of the box-expansion table")
    args = parser.parse_args(argv)
    if args.quick and args.limit is None:
        args.limit, args.crop_limit = QUICK_SCENES, QUICK_CROPS_PER_CLASS
    else:
        args.crop_limit = args.limit
    if args.name is None:
        args.name = run_name("detection_recall", args, "" if args.part == "all" else args.part)
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    settings = Settings.from_env()
    detector = RetinaFaceDetector(model=args.detector or settings.detector_model, num_threads=settings.ort_threads)
    report = Report(args.name, "Face detector recall", command_line("bench.detection_recall", argv),
                    out_dir=args.out_dir, detector=detector.config(), limit=args.limit, split=args.split)
    if args.part in ("crops", "all"):
        benchmark_crops(args, detector, report)
    if args.part in ("scenes", "all"):
        benchmark_scenes(args, detector, report)
    if args.part == "frame":
        benchmark_frame(args, detector, report)
    report.save()
    return {"tables": report.tables, **report.data}


if __name__ == "__main__":
    main()
