"""Where finished video frames go: the annotated video file and its JSON record, written on a thread of their own
(FrameWriter) in the order the frames were read."""
from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from facemask.core.drawing import draw_faces
from facemask.core.errors import FacemaskError
from facemask.core.results import Faces
from facemask.video.summary import StageTimes

_END = object()


class VideoOutputError(FacemaskError, ValueError):
    """The annotated video cannot be written (e.g. frames the encoder refuses); one line for the terminal."""


@dataclass
class FinishedFrame:
    """A frame ready to be written: the picture as read, the faces to draw on it and its JSON record."""

    image: np.ndarray
    shown: Faces  # the confirmed faces of record["faces"]
    record: dict

    def annotated(self) -> np.ndarray:
        return draw_faces(self.image, self.shown)


class JsonFramesWriter:
    """The video's JSON record written as it goes ({...header, "frames": [...], ...footer}): memory stays flat on
    long live runs and the file is complete after a signal."""

    def __init__(self, path: Path, header: dict):
        self.handle = open(path, "w")
        self.handle.write(json.dumps(header)[:-1] + (", " if header else "") + '"frames": [\n')
        self.first = True

    def add(self, record: dict) -> None:
        """One frame's record; its faces (Faces) become JSON here."""
        record = {**record, "faces": record["faces"].to_json()}
        self.handle.write(("" if self.first else ",\n") + json.dumps(record))
        self.first = False

    def close(self, footer: dict) -> None:
        self.handle.write("\n]" + "".join(f", {json.dumps(k)}: {json.dumps(v)}" for k, v in footer.items()) + "}\n")
        self.handle.close()


class FrameWriter:
    """Draws, encodes and records finished frames on a thread of their own, in order, overlapping the analysis of
    the next frames (OpenCV's drawing and encoder release the GIL). An error there is raised in the caller."""

    def __init__(self, out_path: Path, fps: float, record: JsonFramesWriter, timing: StageTimes,
                 progress: Callable[[int], None], depth: int = 8):
        self.out_path, self.fps, self.record, self.timing, self.progress = out_path, fps, record, timing, progress
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.writer: cv2.VideoWriter | None = None
        self.written = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="encode", daemon=True)
        self.thread.start()

    def put(self, frames: list[FinishedFrame]) -> None:
        for frame in frames:
            if self.error is not None:
                raise self.error
            self.queue.put(frame)

    def _run(self) -> None:
        while (frame := self.queue.get()) is not _END:
            if self.error is not None:
                continue  # keep draining so the caller never blocks; it raises the error
            try:
                self._write(frame)
            except BaseException as error:  # noqa: BLE001 (raised in the caller)
                self.error = error

    def _write(self, frame: FinishedFrame) -> None:
        started = time.perf_counter()
        image = frame.annotated()
        drawn = time.perf_counter()
        writer = self.writer
        if writer is None:
            codec = "VP80" if self.out_path.suffix.lower() == ".webm" else "mp4v"  # browsers play VP8 WebM
            writer = self.writer = cv2.VideoWriter(str(self.out_path), cv2.VideoWriter.fourcc(*codec), self.fps,
                                                   (image.shape[1], image.shape[0]))
            if not writer.isOpened():  # e.g. 1x1 frames, or wider than the codec allows: nothing is written
                raise VideoOutputError(f"cannot write a {image.shape[1]}x{image.shape[0]} video to {self.out_path} "
                                       f"(the {codec} encoder refuses this size or the file cannot be created)")
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        self.record.add(frame.record)
        self.written += 1
        self.timing.draw += drawn - started
        self.timing.encode += time.perf_counter() - drawn
        self.progress(1)

    def close(self) -> None:
        """Write what is queued, close the video file; raises the first error the thread met."""
        self.queue.put(_END)
        self.thread.join()
        if self.writer is not None:
            self.writer.release()
        if self.error is not None:
            raise self.error


def decodes(video: Path) -> bool:
    """The written video gives back a frame: an encoder can accept frames and still write a file no player reads
    (VP8 WebM of 2x2 frames, issue 35), which must not pass for a result."""
    capture = cv2.VideoCapture(str(video))
    try:
        return capture.isOpened() and capture.read()[0]
    finally:
        capture.release()
