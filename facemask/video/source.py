"""Where video frames come from: files, cameras and streams (VideoSource), decoded on a thread of their own a few
frames ahead of the analysis (ReadAhead). Used by infer.py's video path, the web page's video jobs and the watch."""
from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

import cv2
import numpy as np

from facemask.core.errors import FacemaskError
from facemask.video.summary import StageTimes

STREAM_SCHEMES = {"rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt"}
DEFAULT_FPS = 25.0
LOG = logging.getLogger(__name__)
_END = object()


class VideoSourceError(FacemaskError, ValueError):
    """The video, camera or stream cannot be opened; the message is one line for the terminal."""


def describe_source(spec: str) -> tuple[str, int | str]:
    """("camera", index), ("stream", url) or ("file", path) for what the user passed as --in_path."""
    text = str(spec).strip()
    if text.isdigit():
        return "camera", int(text)
    if urlparse(text).scheme.lower() in STREAM_SCHEMES:
        return "stream", text
    return "file", text


class VideoSource:
    """Frames of a file, camera or stream as RGB arrays.

    Unreadable frames (corrupt data, a dropped packet) are skipped and counted; reading stops after
    `max_failures` failures in a row (the end of a file, a camera unplugged, a stream that went away).
    """

    def __init__(self, spec: str, max_failures: int = 25, max_pixels: int | None = None,
                 shrink_to_pixels: int | None = None, stream_timeout_s: float | None = None):
        """max_pixels: a frame with more pixels ends the reading with VideoSourceError (a raw stream may change its
        size after the first frame). shrink_to_pixels: larger frames are scaled down to this many pixels as they are
        read, so the frames queued between decoding, analysis and output stay small. stream_timeout_s: a stream that
        sends nothing this long ends the reading (the watch then reopens it)."""
        self.kind, self.target = describe_source(spec)
        self.max_pixels, self.shrink_to_pixels = max_pixels, shrink_to_pixels
        self.live = self.kind != "file"
        if self.kind == "file" and not Path(str(self.target)).is_file():
            raise VideoSourceError(f"input video not found: {self.target}")
        if self.kind == "stream" and stream_timeout_s:  # a stalled stream ends instead of blocking read() for 30 s
            milliseconds = int(stream_timeout_s * 1000)
            self.capture = cv2.VideoCapture(self.target, cv2.CAP_FFMPEG, [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, milliseconds, cv2.CAP_PROP_READ_TIMEOUT_MSEC, milliseconds])
        else:
            self.capture = cv2.VideoCapture(self.target)
        if not self.capture.isOpened():
            what = {"camera": f"camera {self.target}", "stream": f"stream {self.target}"}.get(
                self.kind, f"video (corrupt, empty or unsupported format): {self.target}")
            raise VideoSourceError(f"cannot open {what}")
        fps = self.capture.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if 1.0 <= fps <= 240.0 else DEFAULT_FPS
        count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT)) if self.kind == "file" else 0
        self.total = count if count > 0 else None
        self.max_failures, self.read_count, self.unreadable = max_failures, 0, 0

    @property
    def name(self) -> str:
        if self.kind == "camera":
            return f"camera{self.target}"
        if self.kind == "stream":
            url = urlparse(str(self.target))
            return Path(url.path).stem or url.hostname or "stream"
        return Path(str(self.target)).stem

    def frames(self) -> Iterator[np.ndarray]:
        failures = 0
        while failures < self.max_failures:
            if self.total is not None and self.read_count + self.unreadable >= self.total:
                return
            ok, frame = self.capture.read()
            if ok and frame is not None and frame.size:
                if self.max_pixels is not None and frame.shape[0] * frame.shape[1] > self.max_pixels:
                    raise VideoSourceError(f"frame {self.read_count + 1} is {frame.shape[1]}x{frame.shape[0]} "
                                           f"pixels, the limit here is {self.max_pixels:,}")
                if self.shrink_to_pixels is not None and frame.shape[0] * frame.shape[1] > self.shrink_to_pixels:
                    scale = (self.shrink_to_pixels / (frame.shape[0] * frame.shape[1])) ** 0.5
                    frame = cv2.resize(frame, (max(1, round(frame.shape[1] * scale)),
                                               max(1, round(frame.shape[0] * scale))), interpolation=cv2.INTER_AREA)
                # Failures followed by a good frame were unreadable frames; a final run of failures is the end.
                if failures:
                    LOG.info("%s: skipped %d unreadable frame(s) after frame %d", self.name, failures,
                             self.read_count)
                self.unreadable += failures
                failures = 0
                self.read_count += 1
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            else:
                failures += 1
                if self.live:
                    time.sleep(0.02)

    def close(self) -> None:
        self.capture.release()


class ReadAhead:
    """Frames decoded on a thread of their own, a few ahead of the analysis (OpenCV's decoder releases the GIL)."""

    def __init__(self, frames: Iterator[np.ndarray], timing: StageTimes, depth: int = 4):
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._pump, args=(frames, timing), name="decode", daemon=True)
        self.thread.start()

    def _pump(self, frames: Iterator[np.ndarray], timing: StageTimes) -> None:
        item: object = _END
        try:
            while not self.stopping.is_set():
                started = time.perf_counter()
                frame = next(frames, None)
                timing.decode += time.perf_counter() - started
                if frame is None:
                    break
                self._put(frame)
        except BaseException as error:  # noqa: BLE001 (handed to the reading thread, which raises it)
            item = error
        self._put(item)

    def _put(self, item) -> None:
        while not self.stopping.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            item = self.queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def stop(self) -> None:
        """Stop reading and wait for the thread, so the source can be closed safely."""
        self.stopping.set()
        self.thread.join()
