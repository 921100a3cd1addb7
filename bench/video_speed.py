"""Video frames/s end to end, tracked path vs the old per-frame path, and the /classify crop transports.

    python -m bench.video_speed                  # 640x480 and 1280x720, 100 frames each; transports 8 s each
    python -m bench.video_speed --frames 60 --seconds 3

1. Frames/s end to end (decode mp4 -> detect -> track -> classify over HTTP -> draw -> encode mp4 + JSON) on a
   pan over sample-images/group_mixed.jpg (6 faces), at 640x480 and 1280x720, in one run:
   - per frame (before issue 13): every frame detected at the image default (long side 1024, upscaled) and all its
     crops sent as PNG files in one multipart request, then drawn and written;
   - tracked (now): the video defaults of facemask.video.loop (detector every 3rd frame at the frame's own size,
     optical flow in between, tracks classified when new / every 15 frames / when their crop changes, classification
     overlapping detection, decoding and drawing + encoding on threads of their own, crops sent as one .npy array);
     and the same with the detector on every frame. Per-stage ms per frame are in the table.
2. /classify crops/s with 32 crops per request: one .npy array vs PNG multipart, against ONNX Runtime running the
   same model directly on the same crops, in a process of its own (1 thread, as each gunicorn worker runs it; and
   all cores). The ways take turns (8 rounds), so a shared machine's changing load falls on all of them alike.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import psutil

from bench.common import Report, command_line
from bench.synthetic_video import camera_windows, render
from facemask.core.classifier import MaskClassifier
from facemask.core.crops import crop_face
from facemask.core.detector import DEFAULT_LONG_SIDE, RetinaFaceDetector
from facemask.core.drawing import draw_faces
from facemask.core.images import decode_image, list_images
from facemask.core.paths import REPO_ROOT
from facemask.core.pipeline import ClassifierClient, MaskPipeline
from facemask.core.settings import Settings
from facemask.serving.local_server import LocalService
from facemask.video.loop import VIDEO_DETECT_OPTIONS, annotate_stream
from facemask.video.source import VideoSource
from facemask.video.tracks import VideoSettings

SAMPLE = REPO_ROOT / "sample-images" / "group_mixed.jpg"


def pan_video(path: Path, size: tuple[int, int], frames: int) -> Path:
    photo = decode_image(SAMPLE)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 25.0, size)
    for window in camera_windows(photo.shape[1], photo.shape[0], frames, "pan", seed=0, aspect=size[0] / size[1]):
        writer.write(cv2.cvtColor(render(photo, window, size), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def per_frame_path(pipeline: MaskPipeline, video: Path, out: Path) -> int:
    """The video loop infer.py ran before tracks (the web page's path too, until it took the tracked one): detect
    and classify every frame, draw it, write it, and the JSON of every frame at the end. Returns the number of
    frames. The product no longer has it; it is kept here as the baseline."""
    capture = cv2.VideoCapture(str(video))
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    writer, frames, index = None, [], 0
    try:
        while True:
            ok, frame_bgr = capture.read()
            if not ok:
                break
            frame = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
            if writer is None:
                size = (frame.shape[1], frame.shape[0])
                writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
            result = pipeline.process(frame)
            frames.append({"frame": index, "time_s": round(index / fps, 3), **result.to_dict()})
            writer.write(cv2.cvtColor(draw_faces(frame, result.faces), cv2.COLOR_RGB2BGR))
            index += 1
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    record = {"source": str(video), "output": str(out), "fps": fps, "frames_total": index, "detect_every": 1,
              "detector": pipeline.detector.config(), "classifier_url": pipeline.client.url, "frames": frames}
    out.with_suffix(".json").write_text(json.dumps(record))
    return index


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes and all their children (the classifier's gunicorn workers)."""
    total = 0.0
    for pid in pids:
        try:
            process = psutil.Process(pid)
            for member in [process, *process.children(recursive=True)]:
                times = member.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def sample_crops() -> list[np.ndarray]:
    detector = RetinaFaceDetector()
    crops = []
    for path in list_images(REPO_ROOT / "sample-images"):
        image = decode_image(path)
        crops += [crop_face(image, face.landmarks, face.box) for face in detector.detect(image)]
    return crops


class RawRunner:
    """The model run directly by ONNX Runtime, one batch per call, in its own process and session like a gunicorn
    worker (the kernel shares CPU time out per session, so an in-process loop would be measured on other terms)."""

    def __init__(self, per_batch: int, threads: int | None):
        self.per_batch, self.threads = per_batch, threads

    def run(self, seconds: float) -> tuple[int, float]:
        command = [sys.executable, "-m", "bench.video_speed", "--raw-child", str(self.per_batch),
                   str(self.threads or 0), str(seconds)]
        output = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=True,
                                start_new_session=True).stdout.split()
        return int(output[-2]), float(output[-1])


def raw_child(per_batch: int, threads: int, seconds: float) -> None:
    crops = sample_crops()
    classifier = MaskClassifier(num_threads=threads or None)
    classifier.predict(crops[:per_batch])
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        classifier.predict([crops[(count + i) % len(crops)] for i in range(per_batch)])
        count += per_batch
    print(count, time.perf_counter() - started)


class ServedRunner:
    """`clients` threads, each sending `per_request` crops per /classify request."""

    def __init__(self, url: str, transport: str, crops: list[np.ndarray], per_request: int, clients: int):
        self.sessions = [ClassifierClient(url, transport=transport) for _ in range(clients)]
        self.crops, self.per_request = crops, per_request
        for session in self.sessions:
            session.classify(crops[:per_request])

    def run(self, seconds: float) -> tuple[int, float]:
        done, started = [0] * len(self.sessions), time.perf_counter()

        def client(slot: int):
            started = time.perf_counter()
            while time.perf_counter() - started < seconds:
                batch = [self.crops[(done[slot] + i) % len(self.crops)] for i in range(self.per_request)]
                assert len(self.sessions[slot].classify(batch)) == self.per_request
                done[slot] += self.per_request

        threads = [threading.Thread(target=client, args=(slot,)) for slot in range(len(self.sessions))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return sum(done), time.perf_counter() - started


def interleaved_rates(runners: dict, seconds: float, rounds: int = 8) -> dict[str, float]:
    """Crops/s of each way, measured in turns of seconds/rounds each: a shared machine's load changes by the
    minute, and taking turns exposes every way to the same load."""
    counts, spent = {name: 0 for name in runners}, {name: 0.0 for name in runners}
    for _ in range(rounds):
        for name, runner in runners.items():
            count, elapsed = runner.run(seconds / rounds)
            counts[name] += count
            spent[name] += elapsed
    return {name: counts[name] / spent[name] for name in runners}


def main(argv=None) -> Report | None:
    if argv is None and len(sys.argv) == 5 and sys.argv[1] == "--raw-child":
        raw_child(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
        return None
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=100, help="frames per video")
    parser.add_argument("--seconds", type=float, default=8.0, help="duration of each /classify measurement")
    parser.add_argument("--per-request", type=int, default=32)
    parser.add_argument("--parts", nargs="+", choices=("video", "transport"), default=["video", "transport"])
    parser.add_argument("--out-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    report = Report("video_speed", "Video frames/s (tracked vs per frame) and /classify crop transports",
                    command_line("bench.video_speed", argv), **({"out_dir": args.out_dir} if args.out_dir else {}),
                    frames=args.frames, source="pan over sample-images/group_mixed.jpg (6 faces)")
    threads = Settings.from_env().ort_threads
    with LocalService("classification", workers=2) as classifier, tempfile.TemporaryDirectory() as tmp:
        processes = [os.getpid(), classifier.pid]
        rows = []
        for size in ((640, 480), (1280, 720)) if "video" in args.parts else ():
            video = pan_video(Path(tmp) / f"pan_{size[0]}.mp4", size, args.frames)
            old = MaskPipeline(RetinaFaceDetector(num_threads=threads).prepare(long_side=DEFAULT_LONG_SIDE),
                               ClassifierClient(classifier.url, transport="multipart"))
            started = time.perf_counter()
            count = per_frame_path(old, video, Path(tmp) / "old.mp4")
            old_fps = count / (time.perf_counter() - started)
            rows.append({"frame": f"{size[0]}x{size[1]}", "path": "per frame (before): detect 1024 upscaled, "
                         "PNG multipart", "frames/s": old_fps, "x per frame": 1.0})
            for detect_every in (VideoSettings.detect_every, 1):
                detector = RetinaFaceDetector(num_threads=threads)
                pipeline = MaskPipeline(detector.prepare(**VIDEO_DETECT_OPTIONS),
                                        ClassifierClient(classifier.url))
                started, cpu_started = time.perf_counter(), cpu_seconds(processes)
                footer = annotate_stream(pipeline, VideoSource(str(video)), Path(tmp) / "new.mp4",
                                         VideoSettings(detect_every=detect_every), header={})
                fps = footer.frames_total / (time.perf_counter() - started)
                cpu_per_frame = (cpu_seconds(processes) - cpu_started) / max(footer.frames_total, 1)
                rows.append({"frame": f"{size[0]}x{size[1]}",
                             "path": f"tracked: detector every {detect_every} frame(s), flow, .npy transport",
                             "frames/s": fps, "x per frame": fps / old_fps,
                             "CPU ms per frame": 1e3 * cpu_per_frame,
                             "frames/s 2 free cores could give": psutil.cpu_count() / cpu_per_frame,
                             "people counted": footer.summary.people.total,
                             "crops classified": footer.summary.crops_classified,
                             **{f"{stage} ms": 1e3 * seconds / max(footer.frames_total, 1)
                                for stage, seconds in footer.summary.seconds.to_dict().items()}})
        if rows:
            report.table("End-to-end frames/s (decode, detect, track, classify, draw, encode)", rows,
                         "Target: >= 25 frames/s at 640x480 with up to 6 faces on 2 CPU cores. One run, same "
                         "machine (2 cores, shared with other jobs: compare ratios). Stage columns: ms per frame "
                         "spent in each stage; decoding and drawing + encoding run on threads of their own, "
                         "classification on a third, so stages overlap and add up to more than the wall time. "
                         "CPU ms per frame: user + system CPU of this process and the classifier's workers; "
                         "2 cores divided by it give the last column, an estimate for an idle machine, not a "
                         "measurement.")
        if "transport" not in args.parts:
            report.save()
            return report
        crops = sample_crops()
        n = args.per_request
        runners: dict[str, RawRunner | ServedRunner] = {"raw 1": RawRunner(n, threads=1),
                                                        "raw all": RawRunner(n, threads=None)}
        for clients in (1, 2):
            for transport in ("npy", "multipart"):
                runners[f"{transport} {clients}"] = ServedRunner(classifier.url, transport, crops, n, clients)
        rates = interleaved_rates(runners, args.seconds)
        rows = [{"way": "ONNX Runtime directly, 1 thread (as one gunicorn worker)", "crops/s": rates["raw 1"]},
                {"way": "ONNX Runtime directly, all cores", "crops/s": rates["raw all"]}]
        for clients, raw in ((1, rates["raw 1"]), (2, rates["raw all"])):
            for transport in ("npy", "multipart"):
                rate = rates[f"{transport} {clients}"]
                rows.append({"way": f"/classify {'.npy array' if transport == 'npy' else 'PNG multipart'}, "
                             f"{clients} client(s)", "crops/s": rate, "x raw": rate / raw})
        report.table(f"/classify crops/s at {args.per_request} crops per request vs raw ONNX Runtime", rows,
                     "Target: served >= 2/3 of raw ONNX Runtime. 1 client keeps one of the 2 single-threaded "
                     "workers busy (compare with 1 thread); 2 clients use both (compare with all cores).")
    report.save()
    return report


if __name__ == "__main__":
    main()
