"""Face detection at every face size: precision as well as recall, on close-ups, synthetic frames and scenes.

    python -m bench.detection_sizes                         # all parts, default policies (~15 min on 2 cores)
    python -m bench.detection_sizes --quick                 # fewer photos (~4 min)
    python -m bench.detection_sizes --policies today auto stock-auto --parts crops frames

Every part uses data no detector was trained on:
- crops: crop-set photos outside the classifier's train split (detector training drew its crop-set faces from that
  split). Users send such one-person photos as they are, so each should get exactly one box. Reported: photos with
  exactly one / no / several boxes, by the size of the face (the reference box, below). Photos that really hold a
  second face are listed in bench/two_face_photos.json, with a reason, and left out.
- frames: crop-set photos with exactly one reference face, scaled to a person height of 12-470 px and pasted into
  640x480 and 1280x720 frames, on a plain background or on a background cut from a *train* scene photo (its annotated
  faces are "don't care"). Reported by person height and face size: recall at IoU 0.5, duplicate boxes per face
  (unmatched boxes on the face), false boxes per frame (unmatched boxes elsewhere).
- scenes: the held-out test photos of detection/model/scene_split.json: recall at IoU 0.5 (and 0.3) by annotated
  face size and class, duplicates per face, false positives per image (unmatched at IoU 0.3).
- landmarks: landmark error against the stock detector's landmarks where that one is confident (score >= 0.9),
  in inter-ocular distances, on the held-out crop-set photos.
- speed: detection ms for a 640x480 frame, a 1280x720 frame and a 4000x3000 photo, every policy in one run, with the
  ratio to today's single 1024 px pass.

Reference face of a crop-set photo: the stock detector at a long side of 320 px (640 if it finds nothing), score >= 0.5,
highest score; "one reference face" means no other box scores >= 0.5 there. It does not depend on the policies.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from bench.common import CROPS_DIR, SCENES_DIR, Report, command_line
from bench.detection_recall import detector_training_crops
from facemask.core.boxes import iou_matrix, overlap_of_smaller, widths_heights
from facemask.core.detector import (
    DetectOptions,
    PyramidFaceDetector,
    RetinaFaceDetector,
    boxes_and_scores,
    create_detector,
)
from facemask.core.images import decode_image, list_images
from facemask.core.paths import CENTERFACE_MODEL, REPO_ROOT, RESULTS_DIR, SCENE_SPLIT_FILE
from facemask.core.settings import Settings
from training.annotations import FALSE_POSITIVE_IOU, DatasetError, greedy_match, load_scenes, scene_recall
from training.splits import load_split

TWO_FACE_LIST = REPO_ROOT / "bench" / "two_face_photos.json"
CROP_MANIFEST = REPO_ROOT / "data" / "prepared" / "manifest.csv"

# name -> (detector model, options); "today" is the single 1024 px pass that shipped before the pyramid.
POLICIES = {
    "auto": (None, DetectOptions()),
    "today": (None, DetectOptions(long_side=1024, containment=1.0)),
    "auto-no-containment": (None, DetectOptions(containment=1.0)),
    "auto-untiled": (None, DetectOptions(tile_size=None)),  # the pyramid before issue 23's full-resolution tiles
    "auto-fine-2048": (None, DetectOptions(fine_long_sides=(1024, 2048))),
    "640": (None, DetectOptions(long_side=640, upscale=False)),
    "stock-auto": ("stock", DetectOptions()),
    "stock-1024": ("stock", DetectOptions(long_side=1024, containment=1.0)),
    "centerface-auto": ("centerface", DetectOptions()),
    "centerface-1024": ("centerface", DetectOptions(long_side=1024, containment=1.0)),
    # CenterFace fine-tuned on masked and small faces (training.train_detector --detector centerface)
    "centerface-ft-auto": (str(CENTERFACE_MODEL), DetectOptions()),
    "centerface-ft-native": (str(CENTERFACE_MODEL), DetectOptions(long_side=1024, upscale=False)),
    "centerface-ft-800": (str(CENTERFACE_MODEL), DetectOptions(fine_long_sides=(800, 1024))),
}
DEFAULT_POLICIES = ("today", "auto", "auto-fine-2048", "stock-auto", "centerface-auto")
BASELINE = "today"

PERSON_HEIGHTS = (12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 360, 470)
TARGET_HEIGHTS = (24, 470)  # the range for the frame targets
FRAME_SIZES = ((640, 480), (1280, 720))
CROP_FACE_BINS = (0, 48, 96, 192, 384, 100000)
FRAME_FACE_BINS = (0, 16, 24, 48, 96, 192, 100000)
SCENE_FACE_BINS = (0, 10, 15, 20, 30, 50, 100, 100000)
DUPLICATE_OVERLAP = 0.5  # an unmatched box with half of itself (or of the face) on a face is a duplicate of it
REFERENCE_SIDES = (320, 640)
REFERENCE_THRESHOLD = 0.5
LANDMARK_REFERENCE_SCORE = 0.9
SWEEP_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


@dataclass
class Found:
    boxes: np.ndarray  # (N, 4)
    scores: np.ndarray  # (N,)
    landmarks: np.ndarray  # (N, 5, 2)


def above(found: Found, threshold: float) -> Found:
    """The boxes scoring at least threshold: the same as detecting at it (suppression keeps the better box)."""
    keep = found.scores >= threshold
    return Found(found.boxes[keep], found.scores[keep], found.landmarks[keep])


def run(detector: PyramidFaceDetector, image: np.ndarray, options: DetectOptions) -> Found:
    faces = detector.detect(image, options)
    return Found(*boxes_and_scores(faces), np.array([f.landmarks for f in faces], np.float32).reshape(-1, 5, 2))


def size_bin(size: float, bins: tuple) -> str:
    for low, high in zip(bins, bins[1:]):
        if low <= size < high:
            return f"{low}-{high} px" if high < bins[-1] else f">= {low} px"
    return "?"


def classify_boxes(found: Found, faces: np.ndarray, ignore: np.ndarray | None = None, iou: float = 0.5):
    """Per ground-truth face: matched or not; per face: duplicate boxes on it; and the number of false boxes.

    Unmatched boxes overlapping a face (DUPLICATE_OVERLAP of the smaller box) are its duplicates; those overlapping
    an ignore box are not counted; the rest are false boxes.
    """
    matches = greedy_match(found.boxes, found.scores, faces, iou)
    hit = np.zeros(len(faces), bool)
    hit[matches[matches >= 0]] = True
    duplicates = np.zeros(len(faces), int)
    false_boxes = 0
    for box in found.boxes[matches < 0]:
        on_face = overlap_of_smaller(box, faces)[0] if len(faces) else np.zeros(0)
        if on_face.size and on_face.max() >= DUPLICATE_OVERLAP:
            duplicates[int(on_face.argmax())] += 1
        elif ignore is not None and len(ignore) and iou_matrix(box, ignore).max() >= FALSE_POSITIVE_IOU:
            continue
        else:
            false_boxes += 1
    return hit, duplicates, false_boxes


# ------------------------------------------------------------------------------------------------ data
def held_out_crop_photos(crops_dir: Path, manifest: Path, every: int) -> list[Path]:
    """Crop-set photos outside the classifier's train split (which detector training used), every n-th per class."""
    seen = detector_training_crops(manifest)
    photos = []
    for folder in sorted(p for p in crops_dir.iterdir() if p.is_dir()):
        held_out = [p for p in list_images(folder) if str(p.relative_to(crops_dir)) not in seen]
        photos += held_out[::every]
    return photos


def reference_faces(stock: RetinaFaceDetector, image: np.ndarray) -> Found:
    for side in REFERENCE_SIDES:
        found = run(stock, image, DetectOptions(long_side=side, score_threshold=REFERENCE_THRESHOLD))
        if len(found.scores):
            return found
    return found


def two_face_photos() -> dict[str, str]:
    if not TWO_FACE_LIST.is_file():
        return {}
    return {item["photo"]: item["reason"] for item in json.loads(TWO_FACE_LIST.read_text())["photos"]}


@dataclass
class Policy:
    name: str
    detector: PyramidFaceDetector
    options: DetectOptions


def load_policies(names: list[str], score_threshold: float | None, candidate: Path | None = None) -> list[Policy]:
    """The named policies, then a `candidate` detector file at the service's default options."""
    detectors: dict = {}
    settings = Settings.from_env()
    policies = []
    chosen = {name: POLICIES[name] for name in names}
    if candidate is not None:
        chosen[f"candidate-auto ({candidate.name})"] = (str(candidate), DetectOptions())
    for name, (model, options) in chosen.items():
        if score_threshold is not None:
            options = replace(options, score_threshold=score_threshold)
        if model not in detectors:
            detectors[model] = create_detector(model or settings.detector_model, settings.ort_threads)
        policies.append(Policy(name, detectors[model], options))
    return policies


# ------------------------------------------------------------------------------------------------ parts
def benchmark_crops(photos: list[Path], references: list[Found], policies: list[Policy], report: Report, crops_dir):
    listed = two_face_photos()
    keys = [str(p.relative_to(crops_dir)) for p in photos]
    counted = [i for i, key in enumerate(keys) if key not in listed]
    rows, by_size, several, sweeps = [], [], {}, {}
    sizes = [float(r.boxes[0, 3] - r.boxes[0, 1]) if len(r.scores) else float("nan") for r in references]
    for policy in policies:
        loose = replace(policy.options, score_threshold=min(SWEEP_THRESHOLDS[0], policy.options.score_threshold))
        found = [run(policy.detector, decode_image(photos[index]), loose)
                 for index in tqdm(counted, desc=f"crops {policy.name}", unit="img")]
        sweeps[policy.name] = {t: np.array([len(above(f, t).scores) for f in found]) for t in SWEEP_THRESHOLDS}
        numbers = np.array([len(above(f, policy.options.score_threshold).scores) for f in found])
        several[policy.name] = [keys[i] for i, n in zip(counted, numbers) if n > 1]
        rows.append({"policy": policy.name, "photos": len(counted), "exactly one": float(np.mean(numbers == 1)),
                     "none": float(np.mean(numbers == 0)), "two": float(np.mean(numbers == 2)),
                     "three or more": float(np.mean(numbers >= 3)), "boxes/photo": float(numbers.mean())})
        bins = [size_bin(sizes[i], CROP_FACE_BINS) if sizes[i] == sizes[i] else "no reference face" for i in counted]
        names = [size_bin(low, CROP_FACE_BINS) for low in CROP_FACE_BINS[:-1]] + ["no reference face"]
        for name in (n for n in names if n in bins):
            chosen = np.array([b == name for b in bins])
            by_size.append({"policy": policy.name, "face height": name, "photos": int(chosen.sum()),
                            "exactly one": float(np.mean(numbers[chosen] == 1)),
                            "none": float(np.mean(numbers[chosen] == 0)),
                            "several": float(np.mean(numbers[chosen] > 1))})
    report.table("Crop set: boxes per one-person photo", rows,
                 f"{len(counted)} held-out photos ({len(photos) - len(counted)} listed two-face photos left out: "
                 f"{TWO_FACE_LIST.name}). Target: exactly one on >= 0.98.")
    report.table("Crop set: boxes per photo by face height (reference box, px in the photo)", by_size)
    report.data["crops_with_several_boxes"] = several
    report.data["crop_sweep"] = {name: {t: {"exactly one": float(np.mean(n == 1)), "none": float(np.mean(n == 0))}
                                        for t, n in by_threshold.items()} for name, by_threshold in sweeps.items()}
    return rows


def paste_frame(photo: np.ndarray, reference: np.ndarray, person_height: int, frame_size: tuple, background,
                rng: random.Random):
    """The photo scaled to person_height and pasted at a random place: the frame and the face box in it."""
    frame_w, frame_h = frame_size
    scale = person_height / photo.shape[0]
    if photo.shape[1] * scale > frame_w:
        scale = frame_w / photo.shape[1]
    new_w, new_h = max(1, round(photo.shape[1] * scale)), max(1, round(photo.shape[0] * scale))
    person = cv2.resize(photo, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    frame = background.copy()
    x, y = rng.randint(0, frame_w - new_w), rng.randint(0, frame_h - new_h)
    frame[y:y + new_h, x:x + new_w] = person
    box = reference * np.array([new_w / photo.shape[1], new_h / photo.shape[0]] * 2) + np.array([x, y, x, y])
    return frame, box.astype(np.float32)[None]


def backgrounds(scenes: list, frame_size: tuple, count: int, rng: random.Random):
    """count plain and count scene backgrounds: (name, image, annotated faces in it to ignore)."""
    frame_w, frame_h = frame_size
    plain = [("plain", np.full((frame_h, frame_w, 3), rng.randint(40, 220), np.uint8), np.zeros((0, 4)))
             for _ in range(count)]
    scene_backgrounds = []
    for annotation in rng.sample(scenes, count):
        image = decode_image(annotation.image)
        scale = max(frame_w / image.shape[1], frame_h / image.shape[0])
        resized = cv2.resize(image, (round(image.shape[1] * scale) + 1, round(image.shape[0] * scale) + 1))
        x, y = rng.randint(0, resized.shape[1] - frame_w), rng.randint(0, resized.shape[0] - frame_h)
        faces = annotation.boxes * scale - np.array([x, y, x, y], np.float32)
        scene_backgrounds.append(("scene", resized[y:y + frame_h, x:x + frame_w].copy(), faces))
    return plain + scene_backgrounds


def benchmark_frames(photos, references, policies, report: Report, train_scenes, per_height: int, seed: int):
    rng = random.Random(seed)
    usable = [i for i, r in enumerate(references) if len(r.scores) == 1]
    chosen = rng.sample(usable, min(per_height, len(usable)))
    images = {i: decode_image(photos[i]) for i in chosen}
    # (policy, frame size, background, person height, face height, hit, duplicates, false boxes, hit at IoU 0.3)
    records = []
    for frame_size in FRAME_SIZES:
        grounds = backgrounds(train_scenes, frame_size, max(1, len(chosen) // 2), rng)
        for height in tqdm(PERSON_HEIGHTS, desc=f"frames {frame_size[0]}x{frame_size[1]}", unit="height"):
            for n, index in enumerate(chosen):
                name, ground, ignore = grounds[n % len(grounds)]
                frame, face = paste_frame(images[index], references[index].boxes[0], height, frame_size, ground, rng)
                for policy in policies:
                    found = run(policy.detector, frame, policy.options)
                    hit, duplicates, false_boxes = classify_boxes(found, face, ignore)
                    loose_hit = classify_boxes(found, face, ignore, iou=0.3)[0]
                    records.append((policy.name, f"{frame_size[0]}x{frame_size[1]}", name, height,
                                    float(face[0, 3] - face[0, 1]), bool(hit[0]), int(duplicates[0]), false_boxes,
                                    bool(loose_hit[0])))
    def summary(rows, **keys):
        return {**keys, "frames": len(rows), "recall": float(np.mean([r[5] for r in rows])),
                "recall@0.3": float(np.mean([r[8] for r in rows])),
                "duplicates/face": float(np.mean([r[6] for r in rows])),
                "false boxes/frame": float(np.mean([r[7] for r in rows]))}

    in_range = [r for r in records if TARGET_HEIGHTS[0] <= r[3] <= TARGET_HEIGHTS[1]]
    rows = [summary([r for r in in_range if r[0] == p.name and r[1] == size], policy=p.name, frame=size)
            for p in policies for size in dict.fromkeys(r[1] for r in records)]
    report.table(f"Synthetic frames: people {TARGET_HEIGHTS[0]}-{TARGET_HEIGHTS[1]} px tall", rows,
                 f"{len(chosen)} held-out crop-set photos with one reference face, pasted once per person height, "
                 "frame size and background (half plain, half cut from train scene photos). Recall at IoU 0.5 "
                 "(and 0.3) against the reference box. Targets: recall >= 0.98, duplicates <= 0.01 per face.")
    by_height = [summary([r for r in records if r[0] == p.name and r[3] == h], policy=p.name, person_px=h)
                 for p in policies for h in PERSON_HEIGHTS]
    report.table("Synthetic frames by person height (both frame sizes and backgrounds)", by_height)
    by_face = [summary([r for r in records if r[0] == p.name and size_bin(r[4], FRAME_FACE_BINS) == b],
                       policy=p.name, face=b)
               for p in policies for b in dict.fromkeys(size_bin(r[4], FRAME_FACE_BINS) for r in sorted(
                   records, key=lambda r: r[4]))]
    report.table("Synthetic frames by face height", by_face)
    by_ground = [summary([r for r in in_range if r[0] == p.name and r[2] == g], policy=p.name, background=g)
                 for p in policies for g in ("plain", "scene")]
    report.table(f"Synthetic frames by background (people {TARGET_HEIGHTS[0]}-{TARGET_HEIGHTS[1]} px)", by_ground)
    return rows


def benchmark_scenes(scenes, policies, report: Report, split_name: str = "test"):
    rows, by_size, sweep = [], [], []
    for policy in policies:
        loose = replace(policy.options, score_threshold=min(SWEEP_THRESHOLDS[0], policy.options.score_threshold))
        loose_found = [run(policy.detector, decode_image(a.image), loose)
                       for a in tqdm(scenes, desc=f"scenes {policy.name}", unit="img")]
        for threshold in SWEEP_THRESHOLDS:
            result = scene_recall([(f.boxes, f.scores) for f in loose_found], scenes, threshold)
            crops = report.data.get("crop_sweep", {}).get(policy.name, {}).get(threshold, {})
            sweep.append({"policy": policy.name, "threshold": threshold,
                          "with_mask@0.5": result["recall@0.5"]["with_mask"],
                          "without_mask@0.5": result["recall@0.5"]["without_mask"],
                          "FP/img": result["fp_per_image"], "crop set: exactly one": crops.get("exactly one"),
                          "crop set: none": crops.get("none")})
        found = [above(f, policy.options.score_threshold) for f in loose_found]
        recall = scene_recall([(f.boxes, f.scores) for f in found], scenes, policy.options.score_threshold)
        per_face = [classify_boxes(f, a.boxes) for f, a in zip(found, scenes)]
        duplicates = np.concatenate([d for _, d, _ in per_face])
        rows.append({"policy": policy.name, "with_mask@0.5": recall["recall@0.5"]["with_mask"],
                     "without_mask@0.5": recall["recall@0.5"]["without_mask"],
                     "incorrect@0.5": recall["recall@0.5"]["mask_weared_incorrect"],
                     "all@0.5": recall["recall@0.5"]["all"], "all@0.3": recall["recall@0.3"]["all"],
                     "duplicates/face": float(duplicates.mean()), "FP/img": recall["fp_per_image"]})
        face_sizes = np.concatenate([widths_heights(a.boxes).min(axis=1) for a in scenes])
        hits = {iou: np.concatenate([classify_boxes(f, a.boxes, iou=iou)[0] for f, a in zip(found, scenes)])
                for iou in (0.5, 0.3)}
        for name in dict.fromkeys(size_bin(s, SCENE_FACE_BINS) for s in sorted(face_sizes)):
            chosen = np.array([size_bin(s, SCENE_FACE_BINS) == name for s in face_sizes])
            by_size.append({"policy": policy.name, "face size": name, "faces": int(chosen.sum()),
                            "recall@0.5": float(hits[0.5][chosen].mean()),
                            "recall@0.3": float(hits[0.3][chosen].mean()),
                            "duplicates/face": float(duplicates[chosen].mean())})
    counts = {label: sum(a.labels.count(label) for a in scenes) for label in dict.fromkeys(
        label for a in scenes for label in a.labels)}
    report.table("Held-out scene photos: recall at IoU 0.5, duplicates, false positives", rows,
                 f"{len(scenes)} {split_name} photos ({counts}). "
                 "Targets: masked and unmasked recall >= 0.93, FP/img <= 0.6.")
    report.table("Held-out scene photos by face size (shorter side of the annotated box)", by_size)
    report.table("Score threshold sweep: held-out scenes and one-person photos", sweep,
                 "Each policy detects once at the lowest threshold; higher ones are applied afterwards, which equals "
                 "detecting at them. The crop-set columns need the crops part in the same run.")
    return rows


def benchmark_landmarks(photos, references, policies, report: Report):
    confident = [i for i, r in enumerate(references) if len(r.scores) and r.scores[0] >= LANDMARK_REFERENCE_SCORE]
    rows = []
    for policy in policies:
        errors, missed = [], 0
        for index in tqdm(confident, desc=f"landmarks {policy.name}", unit="img"):
            reference = references[index]
            found = run(policy.detector, decode_image(photos[index]), policy.options)
            matches = iou_matrix(found.boxes, reference.boxes[:1])[:, 0] if len(found.scores) else np.zeros(0)
            if not matches.size or matches.max() < 0.5:
                missed += 1
                continue
            points, truth = found.landmarks[int(matches.argmax())], reference.landmarks[0]
            eyes = max(float(np.linalg.norm(truth[0] - truth[1])), 1.0)
            errors.append(float(np.linalg.norm(points - truth, axis=1).mean()) / eyes)
        error_array = np.array(errors)
        rows.append({"policy": policy.name, "faces": len(error_array), "not matched": missed,
                     "mean error": float(error_array.mean()), "median error": float(np.median(error_array)),
                     "share > 0.25": float(np.mean(error_array > 0.25))})
    report.table("Landmarks against the stock detector's (score >= 0.9), in inter-ocular distances", rows,
                 "The crop is aligned on these five points; 0.1 is a tenth of the eye distance.")
    return rows


def benchmark_speed(policies, report: Report, scene_image: np.ndarray, repeats: int):
    sizes = {"640x480 frame": (640, 480), "1280x720 frame": (1280, 720), "4000x3000 photo": (4000, 3000)}
    rows = []
    for label, size in sizes.items():
        image = cv2.resize(scene_image, size, interpolation=cv2.INTER_LINEAR)
        timings = {}
        for policy in policies:
            policy.detector.detect(image, policy.options)
            runs = []
            for _ in range(repeats if size[0] < 2000 else max(3, repeats // 4)):
                start = time.perf_counter()
                policy.detector.detect(image, policy.options)
                runs.append((time.perf_counter() - start) * 1e3)
            timings[policy.name] = (float(np.median(runs)), float(np.min(runs)))
        base = timings.get(BASELINE)
        for name, (median, best) in timings.items():
            rows.append({"input": label, "policy": name, "median ms": median, "best ms": best,
                         f"x {BASELINE}": median / base[0] if base else float("nan")})
    report.table("Detection time, every policy in one run", rows,
                 f"Median and best of {repeats} runs (4000x3000: of {max(3, repeats // 4)}); the ratio compares "
                 f"medians with '{BASELINE}' measured in the same run. "
                 "Target: <= 1.5x on 640x480, <= 1 s at 4000x3000.")
    return rows


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policies", nargs="+", default=list(DEFAULT_POLICIES), choices=list(POLICIES))
    parser.add_argument("--parts", nargs="+", default=["crops", "frames", "scenes", "landmarks", "speed"],
                        choices=["crops", "frames", "scenes", "landmarks", "speed"])
    parser.add_argument("--crops", type=Path, default=CROPS_DIR, help="ImageFolder of one-person photos")
    parser.add_argument("--crop-manifest", type=Path, default=CROP_MANIFEST,
                        help="training.prepare's manifest: photos in its train split are left out")
    parser.add_argument("--scenes", type=Path, default=SCENES_DIR, help="annotated scenes (images/, annotations/)")
    parser.add_argument("--split-file", type=Path, default=SCENE_SPLIT_FILE)
    parser.add_argument("--scene-split", choices=("valid", "test"), default="test",
                        help="scene photos scored: test (held out, the reported numbers) or valid (to choose a "
                             "setting such as a threshold without looking at test)")
    parser.add_argument("--every", type=int, default=3, help="every n-th held-out crop-set photo per class")
    parser.add_argument("--frame-photos", type=int, default=20, help="photos pasted per person height and frame size")
    parser.add_argument("--threshold", type=float, default=None, help="override every policy's score threshold")
    parser.add_argument("--candidate", type=Path, default=None,
                        help="also a detector ONNX not yet shipped (e.g. runs/detector/detector.onnx), `auto` options")
    parser.add_argument("--repeats", type=int, default=20, help="timing runs per input")
    parser.add_argument("--quick", action="store_true",
                        help="every 6th photo (a subset of every 3rd), 12 frame photos, a third of the scenes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--name", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.every, args.frame_photos = 6, 12
    args.name = args.name or "detection_sizes" + ("_quick" if args.quick else "")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.candidate is not None and not args.candidate.is_file():
        sys.exit(f"error: candidate detector not found: {args.candidate}")
    policies = load_policies(args.policies, args.threshold, args.candidate)
    report = Report(args.name, "Face detection at every face size", command_line("bench.detection_sizes", argv),
                    out_dir=args.out_dir, policies={p.name: {"model": p.detector.model_source,
                                                             **p.detector.config(), **vars(p.options)}
                                                    for p in policies})
    try:
        split = load_split(args.split_file)
        scenes = load_scenes(args.scenes / "images", args.scenes / "annotations")
    except DatasetError as error:
        raise SystemExit(f"error: {error}") from None
    test_scenes = [a for a in scenes if a.image.stem in set(split[args.scene_split])]
    train_scenes = [a for a in scenes if a.image.stem in set(split["train"])]
    if args.quick:
        test_scenes = test_scenes[::3]
    results = {}
    if {"crops", "frames", "landmarks"} & set(args.parts):
        photos = held_out_crop_photos(args.crops, args.crop_manifest, args.every)
        stock = RetinaFaceDetector(model="stock", num_threads=Settings.from_env().ort_threads)
        references = [reference_faces(stock, decode_image(p)) for p in tqdm(photos, desc="reference faces")]
        if "crops" in args.parts:
            results["crops"] = benchmark_crops(photos, references, policies, report, args.crops)
        if "frames" in args.parts:
            results["frames"] = benchmark_frames(photos, references, policies, report, train_scenes,
                                                 args.frame_photos, args.seed)
        if "landmarks" in args.parts:
            results["landmarks"] = benchmark_landmarks(photos, references, policies, report)
    if "scenes" in args.parts:
        results["scenes"] = benchmark_scenes(test_scenes, policies, report, args.scene_split)
    if "speed" in args.parts:
        results["speed"] = benchmark_speed(policies, report, decode_image(test_scenes[0].image), args.repeats)
    report.save()
    return results


if __name__ == "__main__":
    main()
