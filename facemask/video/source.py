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
from facemask.core.privacy import redact_url
from facemask.video.summary import StageTimes

STREAM_SCHEMES = {"rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt"}
DEFAULT_FPS = 25.0
# The detector's smallest anchor is 16 px: no face is found in a narrower frame. Smaller frames also made outputs no
# player reads: VP8 WebM of 2x2 frames is a 436-byte file without a frame (issue 35).
MIN_FRAME_SIDE = 16
LOG = logging.getLogger(__name__)
_END = object()


class VideoSourceError(FacemaskError, ValueError):
    """The video, camera or stream cannot be opened; the message is one line for the terminal."""


def check_frame_sides(width: int, height: int, max_side: int | None = None) -> None:
    """VideoSourceError (one line for the user) for frames that cannot be annotated: too small to hold a face or to
    be encoded, or with a side over max_side (what the caller's encoder takes)."""
    if min(width, height) < MIN_FRAME_SIDE or (max_side is not None and max(width, height) > max_side):
        sides = f"{MIN_FRAME_SIDE} to {max_side}" if max_side is not None else f"at least {MIN_FRAME_SIDE}"
        raise VideoSourceError(f"video frames of {width}x{height} pixels cannot be annotated: each side must be "
                               f"{sides} pixels")


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
                 shrink_to_pixels: int | None = None, stream_timeout_s: float | None = None,
                 max_frames: int | None = None):
        """max_pixels: a frame with more pixels ends the reading with VideoSourceError (a raw stream may change its
        size after the first frame). shrink_to_pixels: larger frames are scaled down to this many pixels as they are
        read, so the frames queued between decoding, analysis and output stay small. stream_timeout_s: a stream that
        sends nothing this long, or nothing decodable (stalled: end_reason says so), ends the reading (the watch then
        reopens it). max_frames: a file with more frames ends the reading with VideoSourceError, whatever its header
        says."""
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
            what = {"camera": f"camera {self.target}", "stream": f"stream {redact_url(str(self.target))}"}.get(
                self.kind, f"video (corrupt, empty or unsupported format): {self.target}")
            raise VideoSourceError(f"cannot open {what}")
        # The container's frame size, checked before anything is decoded or written (0 when it declares none)
        declared = (int(self.capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self.capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        if min(declared) > 0:
            try:
                check_frame_sides(*declared)
            except VideoSourceError:
                self.capture.release()
                raise
        fps = self.capture.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if 1.0 <= fps <= 240.0 else DEFAULT_FPS
        count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT)) if self.kind == "file" else 0
        self.total = count if count > 0 else None  # what the file's header says: a file is still read to its end
        self.max_failures, self.read_count, self.unreadable = max_failures, 0, 0
        self.max_frames, self.stream_timeout_s = max_frames, stream_timeout_s
        self.end_reason: str | None = None  # why frames() ended: "stream ended", "no decodable frame for 10 s", ...
        self.warnings: list[str] = []  # for the run's record, e.g. a header that lied about the frame count

    @property
    def name(self) -> str:
        if self.kind == "camera":
            return f"camera{self.target}"
        if self.kind == "stream":
            url = urlparse(str(self.target))
            return Path(url.path).stem or url.hostname or "stream"
        return Path(str(self.target)).stem

    def frames(self) -> Iterator[np.ndarray]:
        """Every frame up to the end of the file (or of the stream): a header's frame count is not trusted, an AVI
        patched to say 10 frames of 5,000 was cut after 10 (issue 35)."""
        failures, last_frame_at = 0, time.monotonic()
        while failures < self.max_failures:
            ok, frame = self.capture.read()
            if ok and frame is not None and frame.size:
                if self.max_frames is not None and self.read_count >= self.max_frames:
                    said = f" (its header says {self.total})" if self.total is not None else ""
                    raise VideoSourceError(f"video too long: more than {self.max_frames} frames{said}, the limit is "
                                           f"{self.max_frames}")
                if self.read_count == 0:  # the output's size: later frames are scaled to it
                    check_frame_sides(frame.shape[1], frame.shape[0])
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
                failures, last_frame_at = 0, time.monotonic()
                self.read_count += 1
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            else:
                failures += 1
                # A stream that sends data but no frame that decodes (issue 35: 25 random "JPEG"s a second) is
                # stalled as surely as a silent one: each read() then fails at once or after the read timeout.
                if self.live and self.stream_timeout_s and time.monotonic() - last_frame_at >= self.stream_timeout_s:
                    self.end_reason = f"no decodable frame for {self.stream_timeout_s:g} s"
                    return
                if self.live:
                    time.sleep(0.02)
        self.end_reason = "stream ended" if self.live else "end of file"
        if self.total is not None and self.read_count + self.unreadable != self.total:
            self.warnings.append(f"the file's header says {self.total} frames, {self.read_count + self.unreadable} "
                                 "were read: frames_total counts what was read")
            LOG.warning("%s: %s", self.name, self.warnings[-1])

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
