"""Speed of the services and of the whole pipeline, with ratios.

    python -m bench.speed                 # /classify batched vs one request per crop, pipeline frames/s, memory

1. /classify throughput: all crops of a frame in one request (this product) against one request per crop (the
   original article's design), same crops, same server (gunicorn, 2 workers).
2. Full pipeline frames/s (decode -> RetinaFace -> crops -> HTTP /classify -> draw) on a video made from the sample
   images at 640x480 and 1280x720, analysing every frame and every 3rd frame.
3. Peak resident memory of each service's processes.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import requests

from bench.common import Report, command_line
from facemask.core.crops import crop_face
from facemask.core.detector import RetinaFaceDetector
from facemask.core.drawing import draw_faces
from facemask.core.images import decode_image, encode_png, list_images
from facemask.core.paths import REPO_ROOT
from facemask.core.pipeline import ClassifierClient, MaskPipeline
from facemask.core.settings import Settings
from facemask.serving.local_server import LocalService


def sample_crops(images: list[Path]) -> list[bytes]:
    detector = RetinaFaceDetector()
    crops = []
    for path in images:
        image = decode_image(path)
        crops += [encode_png(crop_face(image, f.landmarks, f.box)) for f in detector.detect(image)]
    return crops


def classify_throughput(url: str, crops: list[bytes], per_request: int, seconds: float,
                        keep_alive: bool = True) -> float:
    """Crops per second when every request carries `per_request` crops (without keep_alive: a new TCP connection
    per request, as a plain `requests.post` per crop does)."""
    session, sent, started = (requests.Session() if keep_alive else requests), 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        batch = [crops[(sent + i) % len(crops)] for i in range(per_request)]
        files = [("crops", (f"c{i}.png", data, "image/png")) for i, data in enumerate(batch)]
        response = session.post(url + "/classify", files=files, timeout=60)
        response.raise_for_status()
        sent += per_request
    return sent / (time.perf_counter() - started)


def make_video_frames(images: list[Path], size: tuple[int, int], count: int,
                      video: Path | None = None) -> list[np.ndarray]:
    """`count` RGB frames of `size`: from the video when one is given, else cycling through the images."""
    if video is None:
        frames = [cv2.resize(decode_image(p), size, interpolation=cv2.INTER_AREA) for p in images]
        return [frames[i % len(frames)] for i in range(count)]
    capture, frames = cv2.VideoCapture(str(video)), []
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.resize(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), size, interpolation=cv2.INTER_AREA))
    capture.release()
    if not frames:
        raise SystemExit(f"no frames could be read from {video}")
    return frames


def pipeline_fps(pipeline: MaskPipeline, frames: list[np.ndarray], detect_every: int) -> tuple[float, float]:
    """Frames/s of analyse + draw, as infer.py does for a video (decoding excluded), and mean faces per frame."""
    faces, last, started = [], None, time.perf_counter()
    for index, frame in enumerate(frames):
        if last is None or index % detect_every == 0:
            last = pipeline.process(frame)
            faces.append(len(last.faces))
        draw_faces(frame, last.faces)
    return len(frames) / (time.perf_counter() - started), float(np.mean(faces))


def process_tree_mb(pid: int, field: str = "VmHWM") -> float:
    """Memory of a process and its children, summed: VmHWM = peak resident, VmRSS = resident now."""
    import subprocess

    pids = [str(pid)] + subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    total = 0
    for each in pids:
        try:
            status = Path(f"/proc/{each}/status").read_text()
        except OSError:
            continue
        total += int(next(line.split()[1] for line in status.splitlines() if line.startswith(field)))
    return total / 1024


def main(argv=None) -> Report:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=REPO_ROOT / "sample-images")
    parser.add_argument("--seconds", type=float, default=8.0, help="duration of each /classify measurement")
    parser.add_argument("--frames", type=int, default=60, help="frames per video-size measurement")
    parser.add_argument("--video", type=Path, default=None,
                        help="video for the pipeline measurement (default: frames made from --images)")
    parser.add_argument("--out-dir", type=Path, default=None)
    args = parser.parse_args(argv)

    images = list_images(args.images)
    if not images:
        parser.error(f"no images in {args.images}")
    report = Report("speed", "Speed: /classify batching and full-pipeline frames/s",
                    command_line("bench.speed", argv), **({"out_dir": args.out_dir} if args.out_dir else {}))
    crops = sample_crops(images)
    with LocalService("classification", workers=2) as classifier:
        article = classify_throughput(classifier.url, crops, 1, args.seconds, keep_alive=False)
        rows = [{"design": "1 crop per request, new connection each (the article's client)", "crops/s": article,
                 "x article": 1.0}]
        for per_request in (1, 3, 8, 32):
            rate = classify_throughput(classifier.url, crops, per_request, args.seconds)
            rows.append({"design": f"{per_request} crop(s) per request, keep-alive", "crops/s": rate,
                         "x article": rate / article})
        report.table("/classify throughput, one client (2 gunicorn workers, 1 ONNX Runtime thread each)", rows,
                     "This product sends every face of a frame in one request over a kept-alive connection. On "
                     "loopback a request costs only a few ms, so batching gains less here than across a network.")

        detector = RetinaFaceDetector(num_threads=Settings.from_env().ort_threads)
        client = ClassifierClient(classifier.url)
        rows = []
        for size in ((640, 480), (1280, 720)):
            frames = make_video_frames(images, size, args.frames, args.video)
            for long_side, label in ((None, "native"), ("auto", "auto (default pyramid)")):
                pipeline = MaskPipeline(detector.with_options(long_side=long_side), client)
                for detect_every in (1, 3):
                    fps, faces = pipeline_fps(pipeline, frames, detect_every)
                    rows.append({"frame": f"{size[0]}x{size[1]}", "detector long side": label,
                                 "analyse every": detect_every, "faces/frame": faces, "frames/s": fps})
        report.table("Full pipeline frames/s (detect + crop + HTTP classify + draw, one process)", rows,
                     "Target: >= 25 frames/s at 640x480 with <= 3 faces; these sample frames hold 6 faces each.")
        with LocalService("detection", workers=1, env={"CLASSIFIER_URL": classifier.url}) as detection:
            session = requests.Session()
            for path in images:
                session.post(detection.url + "/detect", data=path.read_bytes(), timeout=60).raise_for_status()
            report.table("Peak memory", [
                {"service": "classification (master + 2 workers)",
                 "peak RSS MB": process_tree_mb(classifier.pid)},
                {"service": "detection (master + 1 worker)", "peak RSS MB": process_tree_mb(detection.pid)}])
    report.save()
    return report


if __name__ == "__main__":
    main()
