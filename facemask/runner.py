"""Annotate image folders and videos: the work behind infer.py."""
from __future__ import annotations

import json
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import cv2
from tqdm import tqdm

from facemask.drawing import draw_faces, style_for
from facemask.images import IMAGE_SUFFIXES, ImageError, decode_image, encode_jpeg, list_images
from facemask.pipeline import MaskPipeline
from facemask.video import VideoSettings, VideoSource, VideoSourceError, annotate_stream, describe_source

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg"}


class InputError(ValueError):
    """A problem with the paths the user gave; the message is one line for the terminal."""


@dataclass
class RunSummary:
    processed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    classifier_errors: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    people: dict | None = None  # videos: distinct people (tracks) by label
    unreadable_frames: int = 0
    interrupted: str | None = None  # the signal that stopped a video run

    def add_counts(self, counts: dict) -> None:
        for label, number in counts.items():
            self.counts[label] = self.counts.get(label, 0) + number

    def faces_line(self) -> str:
        """One line for the terminal, every class by its drawn name, e.g. "faces: 3 Mask, 1 Mask worn wrong"."""
        if not self.counts:
            return "faces: none found"
        return "faces: " + ", ".join(f"{number} {style_for(label)[0]}" for label, number
                                     in sorted(self.counts.items(), key=lambda item: -item[1]))

    def to_dict(self) -> dict:
        result = {"processed": len(self.processed), "failed": self.failed,
                  "classifier_errors": self.classifier_errors, "faces": self.counts}
        if self.people is not None:
            result.update(people=self.people, unreadable_frames=self.unreadable_frames,
                          interrupted=self.interrupted)
        return result


def _inside(folder: Path, path: Path) -> Path:
    """Refuse output paths that would leave the output folder (names with '..', absolute parts, links)."""
    resolved = path.resolve()
    if not resolved.is_relative_to(folder.resolve()):
        raise InputError(f"refusing to write outside the output folder: {path}")
    return resolved


def plan_image_outputs(in_path: Path, out_path: Path) -> list[tuple[Path, Path]]:
    """(input image, output image) pairs; a folder keeps its sub-folder structure under out_path."""
    if not in_path.exists():
        raise InputError(f"input not found: {in_path}")
    if in_path.is_file():
        if out_path.suffix.lower() in IMAGE_SUFFIXES:
            if not out_path.parent.is_dir():
                raise InputError(f"output folder does not exist: {out_path.parent}")
            return [(in_path, out_path.with_suffix(".jpg"))]
        folder = _prepare_folder(out_path)
        return [(in_path, _inside(folder, folder / (in_path.stem + ".jpg")))]
    images = list_images(in_path)
    if not images:
        raise InputError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found in {in_path}")
    folder = _prepare_folder(out_path)
    return [(image, _inside(folder, folder / image.relative_to(in_path).with_suffix(".jpg"))) for image in images]


def _prepare_folder(out_path: Path) -> Path:
    if out_path.exists() and not out_path.is_dir():
        raise InputError(f"output path exists and is not a folder: {out_path}")
    if not out_path.parent.is_dir():
        raise InputError(f"output folder does not exist: {out_path.parent}")
    out_path.mkdir(exist_ok=True)
    return out_path


def annotate_images(pipeline: MaskPipeline, pairs: list[tuple[Path, Path]]) -> RunSummary:
    """Annotated JPEG + JSON sidecar per image; unreadable files are reported and skipped, the rest go on."""
    summary = RunSummary()
    for source, target in tqdm(pairs, desc="images", unit="img", disable=len(pairs) < 2):
        try:
            image = decode_image(source)
        except ImageError as error:
            summary.failed[str(source)] = str(error)
            continue
        result = pipeline.process(image)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(encode_jpeg(draw_faces(image, result.faces)))
        record = {"source": str(source), "output": str(target), "detector": pipeline.detector.config(),
                  "classifier_url": pipeline.client.url, **result.to_dict()}
        target.with_suffix(".json").write_text(json.dumps(record, indent=2))
        summary.processed.append(str(source))
        summary.add_counts(result.counts)
        if result.error:
            summary.classifier_errors[str(source)] = result.error
    return summary


def plan_video_output(in_spec: str, out_path: Path) -> Path:
    """Output video path for a file, camera index or stream URL (see facemask.video.describe_source)."""
    kind, target = describe_source(in_spec)
    if kind == "file":
        in_path = Path(target)
        if not in_path.is_file():
            raise InputError(f"input video not found: {in_path}")
        if in_path.suffix.lower() in IMAGE_SUFFIXES:
            raise InputError(f"{in_path} is an image: add --is_image")
        stem = in_path.stem
    else:
        stem = f"camera{target}" if kind == "camera" else (Path(urlparse(target).path).stem or "stream")
    if out_path.suffix.lower() in VIDEO_SUFFIXES:
        if not out_path.parent.is_dir():
            raise InputError(f"output folder does not exist: {out_path.parent}")
        return out_path
    folder = _prepare_folder(out_path)
    return _inside(folder, folder / (stem + "_annotated.mp4"))


class StopSignals:
    """While active, SIGINT and SIGTERM only set `received` (the run then finishes its files and stops)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.received: str | None = None
        self.number: int | None = None
        self._previous = {}

    def _handle(self, number, _frame):
        self.received, self.number = signal.Signals(number).name, number

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            self._previous = {number: signal.signal(number, self._handle) for number in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)


def annotate_video(pipeline: MaskPipeline, in_spec: str | Path, out_path: Path,
                   settings: VideoSettings | None = None, stop: StopSignals | None = None,
                   on_frame: Callable[[int, int | None], None] | None = None) -> RunSummary:
    """Annotated video + JSON record (every frame's faces with track ids, and a per-video summary of people).

    in_spec: a file, a camera index ("0") or a stream URL (rtsp://, http://, ...). SIGINT / SIGTERM finish the
    video file and the JSON for the frames done (summary.interrupted names the signal). An out_path ending in
    .webm is written as VP8. on_frame(frames done, frames total or None) replaces the terminal progress bar.
    """
    try:
        source = VideoSource(str(in_spec))
    except VideoSourceError as error:
        raise InputError(str(error)) from None
    settings = settings or VideoSettings()
    header = {"source": str(in_spec), "source_kind": source.kind, "output": str(out_path),
              "detect_every": settings.detect_every, "detector": pipeline.detector.config(),
              "classifier_url": pipeline.client.url}
    stop = stop or StopSignals()
    with stop, tqdm(total=source.total, desc="frames", unit="frame", disable=on_frame is not None) as progress:
        done = [0]

        def advance(count: int) -> None:
            progress.update(count)
            done[0] += count
            if on_frame is not None:
                on_frame(done[0], source.total)

        footer = annotate_stream(pipeline, source, out_path, settings, header, should_stop=lambda: stop.received,
                                 progress=advance)
    summary = RunSummary()
    if footer["frames_total"] == 0 and not stop.received:
        out_path.unlink(missing_ok=True)
        out_path.with_suffix(".json").unlink(missing_ok=True)
        raise InputError(f"video has no readable frames: {in_spec}")
    summary.processed.append(str(in_spec))
    summary.classifier_errors.update(footer["classifier_errors"])
    summary.people = footer["summary"]["people"]
    summary.unreadable_frames = footer["unreadable_frames"]
    summary.interrupted = footer["interrupted"]
    for track in footer["summary"]["tracks"]:
        if track["counted"]:
            summary.add_counts({track["label"]: 1})
    return summary


def annotate_video_frames(pipeline: MaskPipeline, in_path: Path, out_path: Path, detect_every: int = 1,
                   on_frame: Callable[[int, int | None], None] | None = None) -> RunSummary:
    """Annotated video + JSON sidecar, frame by frame with no tracks: the web page's video jobs (detection/app/
    video_jobs.py), whose progress, stage timings and face counts are per analysed frame. infer.py uses the
    tracked annotate_video.

    detect_every > 1 runs detection and classification on every n-th frame and draws the last result on the
    frames between (a speed/latency trade-off for real-time use; the JSON says which frames were analysed).
    An out_path ending in .webm is written as VP8, which browsers play; anything else as MPEG-4 part 2.
    on_frame(frames done, frames total or None) replaces the terminal progress bar (the web page's progress).
    """
    capture = cv2.VideoCapture(str(in_path))
    if not capture.isOpened():
        raise InputError(f"cannot open video (corrupt, empty or unsupported format): {in_path}")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    writer, frames, summary, last = None, [], RunSummary(), None
    try:
        with tqdm(total=total, desc="frames", unit="frame", disable=on_frame is not None) as progress:
            index = 0
            while True:
                ok, frame_bgr = capture.read()
                if not ok:
                    break
                frame = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
                if writer is None:
                    codec = "VP80" if out_path.suffix.lower() == ".webm" else "mp4v"
                    writer = cv2.VideoWriter(str(out_path), cv2.VideoWriter_fourcc(*codec), fps,
                                             (frame.shape[1], frame.shape[0]))
                if last is None or index % detect_every == 0:
                    last = pipeline.process(frame)
                    frames.append({"frame": index, "time_s": round(index / fps, 3), **last.to_dict()})
                    summary.add_counts(last.counts)
                    if last.error:
                        summary.classifier_errors[f"frame {index}"] = last.error
                writer.write(cv2.cvtColor(draw_faces(frame, last.faces), cv2.COLOR_RGB2BGR))
                index += 1
                progress.update(1)
                if on_frame is not None:
                    on_frame(index, total)
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    if index == 0:
        raise InputError(f"video has no readable frames: {in_path}")
    summary.processed.append(str(in_path))
    record = {"source": str(in_path), "output": str(out_path), "fps": fps, "frames_total": index,
              "detect_every": detect_every, "detector": pipeline.detector.config(),
              "classifier_url": pipeline.client.url, "frames": frames}
    out_path.with_suffix(".json").write_text(json.dumps(record))
    return summary
