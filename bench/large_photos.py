"""Large photos at full resolution (issue 23): mosaics of held-out photos against the same photos alone, a 6x6 crowd,
time per photo by size, video frames, and a 12 MP photo through the service and the CLI.

    python -m bench.large_photos                       # every part (~10 min on 2 shared cores)
    python -m bench.large_photos --mosaics 1 --parts mosaics crowd   # a quick look

- mosaics: held-out test photos of the scene set (detection/model/scene_split.json) and of the real-photo set
  (detection/model/ilc_split.json), each first brought to 1024 px on its long side (the size the detector's fine
  pass looks at a photo alone: 400 px scene photos are upscaled to it, so "alone" and "in the mosaic" see the same
  pixels), pasted 3x3 and 4x4 (rows and columns as tall and wide as their largest photo, grey between). Each photo
  alone and each mosaic go through detector + classifier (a local classification service); both are scored on the
  mosaic's ground truth: recall and 3-class face accuracy (correctly labelled faces / all faces) at IoU 0.3 and 0.5,
  false positives per photo (unmatched at IoU 0.3), detection time. "today" is the mosaic under the pyramid before
  issue 23 (tile_size=None).
- crowd: sample-images/group_small_faces.jpg tiled 6x6 (3360x2328, 216 faces, labels.json by construction), and the
  same crowd at 12 MP; a face counts as found when one box holds its centre, as right when that box's label is true.
- speed: detection time of one photo at 1, 3, 7 and 12 MP and of 640x480, 1280x720 and 1920x1080 video frames,
  today's policy and the new one in one run, with their ratio.
- service: a 12 MP photo through POST /detect (peak resident memory of the detection worker) and through infer.py.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import requests
from tqdm import tqdm

from bench.common import Report, command_line
from bench.end_to_end import evaluate
from facemask.core.detector import DetectOptions, PyramidFaceDetector, create_detector
from facemask.core.images import decode_image, encode_jpeg
from facemask.core.paths import (
    REAL_PHOTOS_DIR,
    REAL_PHOTOS_SPLIT_FILE,
    REPO_ROOT,
    RESULTS_DIR,
    SCENE_SPLIT_FILE,
    SCENES_DIR,
)
from facemask.core.pipeline import ClassifierClient, MaskPipeline
from facemask.core.results import FaceResult
from facemask.core.settings import Settings
from facemask.serving.local_server import LocalService
from facemask.video.loop import VIDEO_DETECT_OPTIONS
from training.annotations import Annotation, DatasetError, load_scenes, scene_recall
from training.splits import load_split

DATASETS = {"scenes": (SCENES_DIR, SCENE_SPLIT_FILE), "real photos": (REAL_PHOTOS_DIR, REAL_PHOTOS_SPLIT_FILE)}
CELL_LONG_SIDE = 1024
GRIDS = (3, 4)
GREY = (128, 128, 128)
TODAY = DetectOptions(tile_size=None)  # the auto pyramid before issue 23
CROWD_PHOTO = REPO_ROOT / "sample-images" / "group_small_faces.jpg"
CROWD_GRID = 6
MEGAPIXELS = (1, 3, 7, 12)
VIDEO_FRAMES = ((640, 480), (1280, 720), (1920, 1080))
TWELVE_MP = (12e6 / (CROWD_GRID * 560 * CROWD_GRID * 388)) ** 0.5  # the crowd's scale to 12 MP
# infer.py in a child whose own peak resident memory is printed (this process's children include the services).
PEAK_OF_CHILD = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
                 "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)")


# ----------------------------------------------------------------------------------------------- mosaics
def at_cell_size(annotation: Annotation) -> tuple[np.ndarray, np.ndarray]:
    """The photo and its boxes with the long side at CELL_LONG_SIDE px."""
    image = decode_image(annotation.image)
    scale = CELL_LONG_SIDE / max(image.shape[:2])
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    image = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return image, annotation.boxes * np.float32(scale)


def build_mosaic(photos: list[np.ndarray], grid: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The photos pasted row by row, tallest (portrait) first so that they share rows and the grey between photos
    stays small, each centred in its row and column; returns the mosaic and each photo's offset, in the given order."""
    order = sorted(range(len(photos)), key=lambda i: -photos[i].shape[0] / photos[i].shape[1])
    rows = [[photos[i] for i in order[r * grid:(r + 1) * grid]] for r in range(grid)]
    heights = [max(p.shape[0] for p in row) for row in rows]
    widths = [max(rows[r][c].shape[1] for r in range(grid)) for c in range(grid)]
    mosaic = np.empty((sum(heights), sum(widths), 3), np.uint8)
    mosaic[:] = GREY
    offsets = []
    for r, row in enumerate(rows):
        for c, photo in enumerate(row):
            x = sum(widths[:c]) + (widths[c] - photo.shape[1]) // 2
            y = sum(heights[:r]) + (heights[r] - photo.shape[0]) // 2
            mosaic[y:y + photo.shape[0], x:x + photo.shape[1]] = photo
            offsets.append((x, y))
    return mosaic, [offsets[order.index(i)] for i in range(len(photos))]


def shifted(faces: Sequence[FaceResult], dx: float, dy: float) -> list[FaceResult]:
    return [dataclasses.replace(face, box=(face.box[0] + dx, face.box[1] + dy, face.box[2] + dx, face.box[3] + dy))
            for face in faces]


def scores_of(predictions: Sequence[Sequence[FaceResult]], annotations: list[Annotation], classes: list[str],
              photos: int) -> dict:
    detections = [(np.array([f.box for f in faces], np.float32).reshape(-1, 4),
                   np.array([f.det_score for f in faces], np.float32)) for faces in predictions]
    recall = scene_recall(detections, annotations, 0.0)
    accuracy = {iou: evaluate(predictions, annotations, classes, iou)["accuracy_main"] for iou in (0.3, 0.5)}
    return {"recall@0.3": recall["recall@0.3"]["all"], "recall@0.5": recall["recall@0.5"]["all"],
            "acc@0.3": accuracy[0.3], "acc@0.5": accuracy[0.5],
            "FP/photo": recall["fp_per_image"] * len(annotations) / photos}


def benchmark_mosaics(args, detector: PyramidFaceDetector, client: ClassifierClient, classes: list[str],
                      report: Report) -> list[dict]:
    new, today = MaskPipeline(detector, client), MaskPipeline(detector.with_options(tile_size=None), client)
    rows = []
    for dataset, (root, split_file) in DATASETS.items():
        try:
            held_out = set(load_split(split_file)["test"])
            annotations = [a for a in load_scenes(root / "images", root / "annotations") if a.image.stem in held_out]
        except DatasetError as error:
            raise SystemExit(f"error: {error}") from None
        annotations = [a for a in annotations if len(a.labels)]
        chosen = random.Random(args.seed).sample(annotations, sum(g * g for g in GRIDS) * args.mosaics)
        start = 0
        for grid in GRIDS:
            truth, alone, mosaic_new, mosaic_today = [], [], [], []
            time_alone = time_new = time_today = 0.0
            for _ in tqdm(range(args.mosaics), desc=f"{dataset} {grid}x{grid}", unit="mosaic"):
                group = chosen[start:start + grid * grid]
                start += grid * grid
                photos, boxes = zip(*(at_cell_size(a) for a in group))
                mosaic, offsets = build_mosaic(list(photos), grid)
                faces_alone = []
                for photo, (x, y) in zip(photos, offsets):
                    frame = new.process(photo)
                    time_alone += frame.timing_ms["detect"]
                    faces_alone += shifted(frame.faces, x, y)
                frames = {name: pipeline.process(mosaic) for name, pipeline in (("new", new), ("today", today))}
                time_new += frames["new"].timing_ms["detect"]
                time_today += frames["today"].timing_ms["detect"]
                truth.append(Annotation(image=Path(f"{dataset}_{grid}x{grid}.png"), width=mosaic.shape[1],
                                        height=mosaic.shape[0],
                                        boxes=np.concatenate([b + np.array([x, y, x, y], dtype=np.float32)
                                                              for b, (x, y) in zip(boxes, offsets)]),
                                        labels=[label for a in group for label in a.labels]))
                alone.append(faces_alone)
                mosaic_new.append(frames["new"].faces)
                mosaic_today.append(frames["today"].faces)
            photos_count = args.mosaics * grid * grid
            base = scores_of(alone, truth, classes, photos_count)
            size = f"{truth[0].width}x{truth[0].height}"
            for name, predictions, elapsed in (("alone", alone, time_alone), ("mosaic", mosaic_new, time_new),
                                               ("mosaic, today", mosaic_today, time_today)):
                scores = base if name == "alone" else scores_of(predictions, truth, classes, photos_count)
                rows.append({"set": dataset, "grid": f"{grid}x{grid}", "mosaic px": size, "photos": photos_count,
                             "faces": sum(len(a.labels) for a in truth), "run": name, **scores,
                             "recall@0.3 / alone": scores["recall@0.3"] / base["recall@0.3"],
                             "acc@0.3 / alone": scores["acc@0.3"] / base["acc@0.3"],
                             "detect s": elapsed / 1e3, "time / alone": elapsed / time_alone})
    report.table("Mosaics of held-out photos against the same photos alone", rows,
                 "Photos at 1024 px long side, detector + classifier; acc = correctly labelled faces / all faces "
                 "(3 classes); time = detection only, summed over the photos alone. Targets: recall and acc >= 0.97 "
                 "of alone, time <= 1.5x alone.")
    return rows


# ----------------------------------------------------------------------------------------------- crowd
def crowd_photo(scale: float = 1.0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The 6x6 crowd, its face centres and true labels (scaled by `scale`)."""
    photo = decode_image(CROWD_PHOTO)
    labels = json.loads((CROWD_PHOTO.parent / "labels.json").read_text())[CROWD_PHOTO.name]
    height, width = photo.shape[:2]
    crowd = np.tile(photo, (CROWD_GRID, CROWD_GRID, 1))
    centres = np.array([[face["center"][0] + width * c, face["center"][1] + height * r]
                        for r in range(CROWD_GRID) for c in range(CROWD_GRID) for face in labels], np.float32)
    if scale != 1.0:
        crowd = cv2.resize(crowd, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    return crowd, centres * scale, [face["label"] for face in labels] * CROWD_GRID ** 2


def crowd_scores(faces: Sequence[FaceResult], centres: np.ndarray, labels: list[str]) -> dict:
    """Faces found (one box holds the centre), labelled right, boxes on several faces or on none, labels used."""
    boxes = np.array([f.box for f in faces], np.float32).reshape(-1, 4)
    inside = ((centres[:, None, 0] >= boxes[None, :, 0]) & (centres[:, None, 0] <= boxes[None, :, 2])
              & (centres[:, None, 1] >= boxes[None, :, 1]) & (centres[:, None, 1] <= boxes[None, :, 3]))
    found = inside.sum(axis=1) == 1
    right = [bool(found[i]) and faces[int(inside[i].argmax())].label == labels[i] for i in range(len(labels))]
    return {"faces": len(labels), "boxes": len(faces), "found": int(found.sum()), "labelled right": int(sum(right)),
            "found share": float(found.mean()), "right share": float(np.mean(right)),
            "faces with several boxes": int((inside.sum(axis=1) > 1).sum()),
            "boxes on no face": int((inside.sum(axis=0) == 0).sum()),
            "labels given": ", ".join(sorted({f.label for f in faces}))}


def benchmark_crowd(detector: PyramidFaceDetector, client: ClassifierClient, report: Report) -> list[dict]:
    rows = []
    for scale in (1.0, TWELVE_MP):
        crowd, centres, labels = crowd_photo(scale)
        for name, options in (("new", detector.options), ("today", TODAY)):
            frame = MaskPipeline(detector.with_options(**vars(options)), client).process(crowd)
            rows.append({"photo": f"{crowd.shape[1]}x{crowd.shape[0]}", "policy": name,
                         **crowd_scores(frame.faces, centres, labels), "detect s": frame.timing_ms["detect"] / 1e3})
    report.table(f"{CROWD_GRID}x{CROWD_GRID} crowd of {CROWD_PHOTO.name} (true labels: with_mask, without_mask)",
                 rows, "Targets: >= 95 % found and labelled right; no label the photo does not hold.")
    return rows


# ----------------------------------------------------------------------------------------------- speed
def network_megapixels(options: DetectOptions, height: int, width: int) -> float:
    """Pixels all passes of one detect() call feed the network, in millions: the cost without the machine's noise."""
    passes = sum(height * width * scale ** 2 for scale, _ in options.passes(height, width))
    return (passes + sum((x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in options.tiles(height, width))) / 1e6


def timings_ms(detector: PyramidFaceDetector, image: np.ndarray, options: list[DetectOptions],
               repeats: int) -> list[tuple[float, float]]:
    """(median, best) detection ms of each option on the image, their runs interleaved so that other work on a
    shared machine falls on all of them alike."""
    runs: list[list[float]] = [[] for _ in options]
    for option in options:
        detector.detect(image, option)
    for _ in range(repeats):
        for option, times in zip(options, runs):
            start = time.perf_counter()
            detector.detect(image, option)
            times.append((time.perf_counter() - start) * 1e3)
    return [(float(np.median(times)), float(np.min(times))) for times in runs]


def benchmark_speed(detector: PyramidFaceDetector, repeats: int, report: Report) -> list[dict]:
    crowd, _, _ = crowd_photo()
    rows = []
    for megapixels in MEGAPIXELS:
        scale = (megapixels * 1e6 / (crowd.shape[0] * crowd.shape[1])) ** 0.5
        image = cv2.resize(crowd, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else
                           cv2.INTER_LINEAR)
        new, today = timings_ms(detector, image, [detector.options, TODAY], repeats)
        rows.append({"input": f"{megapixels} MP photo ({image.shape[1]}x{image.shape[0]})", "today ms": today[0],
                     "new ms": new[0], "new / today": new[0] / today[0], "best: new / today": new[1] / today[1],
                     "tiles": len(detector.options.tiles(*image.shape[:2])),
                     "network MP: new / today": network_megapixels(detector.options, *image.shape[:2])
                     / network_megapixels(TODAY, *image.shape[:2]),
                     "new ms per MP": new[0] / (image.shape[0] * image.shape[1] / 1e6)})
    video = DetectOptions(**VIDEO_DETECT_OPTIONS)
    for width, height in VIDEO_FRAMES:
        frame = cv2.resize(crowd, (width, height), interpolation=cv2.INTER_AREA)
        default, auto = timings_ms(detector, frame, [video, detector.options], repeats)
        rows.append({"input": f"{width}x{height} video frame", "today ms": default[0], "new ms": default[0],
                     "new / today": 1.0, "tiles": 0, "--long-side auto ms": auto[0],
                     "auto / default": auto[0] / default[0], "best: auto / default": auto[1] / default[1],
                     "auto tiles": len(detector.options.tiles(height, width)),
                     "network MP: auto / default": network_megapixels(detector.options, height, width)
                     / network_megapixels(video, height, width)})
    report.table("Detection time per photo and per video frame, one run", rows,
                 f"Median of {repeats} interleaved runs (best-of ratios too). Photos: the crowd resized. today: "
                 "the pyramid before issue 23. Video frames: the default (one pass at the frame's size up to 1024 "
                 "px) is unchanged; --long-side auto is the option for distant cameras: the photo pyramid, which "
                 "tiles 1920x1080 frames at full resolution (on smaller frames it is the two-pass pyramid, untiled).")
    return rows


# ----------------------------------------------------------------------------------------------- service
def benchmark_service(classifier_url: str, report: Report, logs: Path) -> list[dict]:
    crowd, centres, labels = crowd_photo(TWELVE_MP)
    body = encode_jpeg(crowd)
    rows = []
    with LocalService("detection", workers=1, env={"CLASSIFIER_URL": classifier_url},
                      log_path=logs / "detection.log") as service:
        for annotated in ("0", "1"):
            started = time.perf_counter()
            response = requests.post(service.url + "/detect", params={"annotated": annotated},
                                     files={"image": ("crowd.jpg", body, "image/jpeg")}, timeout=120)
            elapsed = time.perf_counter() - started
            faces = response.json().get("faces", []) if response.status_code == 200 else []
            results = [FaceResult.from_dict(face) for face in faces]
            rows.append({"run": f"POST /detect?annotated={annotated}", "status": response.status_code,
                         "s": elapsed, "found": crowd_scores(results, centres, labels)["found"],
                         "peak worker MB": max(service.worker_peak_rss()) / 2 ** 20})
    with tempfile.TemporaryDirectory() as folder:
        photo = Path(folder) / "crowd_12mp.jpg"
        photo.write_bytes(body)
        started = time.perf_counter()
        run = subprocess.run([sys.executable, "-c", PEAK_OF_CHILD, sys.executable, "infer.py", "--is_image",
                              "--in_path", str(photo), "--out_path", str(Path(folder) / "out"),
                              "--classifier-url", classifier_url, "--no-local-classifier"],
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
        peak_kib = int(run.stdout.strip().splitlines()[-1])
        sidecar = Path(folder) / "out" / "crowd_12mp.json"
        faces = json.loads(sidecar.read_text())["faces"] if sidecar.is_file() else []
        results = [FaceResult.from_dict(face) for face in faces]
        rows.append({"run": "infer.py --is_image", "status": run.returncode, "s": time.perf_counter() - started,
                     "found": crowd_scores(results, centres, labels)["found"],
                     "peak worker MB": peak_kib / 1024})
    report.table(f"A 12 MP photo ({crowd.shape[1]}x{crowd.shape[0]}, the crowd, {len(labels)} faces) through the "
                 "service and the CLI", rows, "Peak resident memory: the detection worker's VmHWM; for infer.py "
                 "the process's. Limit: 1 GB (the abuse benchmark's).")
    return rows


# ----------------------------------------------------------------------------------------------- main
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", default=["mosaics", "crowd", "speed", "service"],
                        choices=["mosaics", "crowd", "speed", "service"])
    parser.add_argument("--mosaics", type=int, default=2, help="mosaics per grid and data set")
    parser.add_argument("--repeats", type=int, default=5, help="timing runs per input")
    parser.add_argument("--seed", type=int, default=0, help="which held-out photos go into the mosaics")
    parser.add_argument("--detector", default=None, help="detector ONNX or 'stock' (default: the service's)")
    parser.add_argument("--classifier-url", default=None, help="use this running classifier instead of starting one")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--name", default="large_photos")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    settings = Settings.from_env()
    detector = create_detector(args.detector or settings.detector_model, settings.ort_threads)
    report = Report(args.name, "Large photos at full resolution", command_line("bench.large_photos", argv),
                    out_dir=args.out_dir, detector=detector.config())
    logs = args.out_dir / "tmp"
    logs.mkdir(parents=True, exist_ok=True)
    results = {}
    service = None
    try:
        if {"mosaics", "crowd", "service"} & set(args.parts) and not args.classifier_url:
            service = LocalService("classification", workers=2, log_path=logs / "classification.log").start()
        client = ClassifierClient(args.classifier_url or (service.url if service else None))
        if "mosaics" in args.parts:
            results["mosaics"] = benchmark_mosaics(args, detector, client, client.info()["classes"], report)
        if "crowd" in args.parts:
            results["crowd"] = benchmark_crowd(detector, client, report)
        if "speed" in args.parts:
            results["speed"] = benchmark_speed(detector, args.repeats, report)
        if "service" in args.parts:
            results["service"] = benchmark_service(client.url, report, logs)
    except RuntimeError as error:
        raise SystemExit(f"error: {error}") from None
    finally:
        if service:
            service.stop()
    report.save()
    return results


if __name__ == "__main__":
    main()
