"""The annotated video recorded in rotating segments: H.264 in fragmented MP4 (browsers play it), frames
timestamped by the wall clock.

- Each frame's time is when it was read from the camera, so a segment plays at the speed things happened, whatever
  the camera's announced or the analysed frame rate, and frames dropped to keep up show as a longer frame.
- An outage (no frame for gap_s) ends the segment: the next one starts when the camera is back, named by its UTC
  start time, so the gap shows between the files instead of being hidden in one.
- Fragmented MP4 (a fragment per keyframe, a keyframe every keyframe_s, written through at once): a killed process
  leaves a playable file that lacks at most the last fragment, about a second, not the whole segment.
- A disk problem (full, read-only, gone) is logged once, counted (on_error) and stops the recording; the watch goes
  on counting and raising events.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path
from typing import Callable

import av
import numpy as np

log = logging.getLogger("facemask.watch")

MILLISECONDS = Fraction(1, 1000)
# Muxer options: a fragment per keyframe, the index up front (empty_moov), every packet written through to the file.
FRAGMENTED_MP4 = {"movflags": "frag_keyframe+empty_moov+default_base_moof", "flush_packets": "1"}
# x264: fast enough for a live camera on one core, no look-ahead (a frame is encoded as it comes, so a kill loses
# little), quality good enough to read the labels.
X264_OPTIONS = {"preset": "veryfast", "tune": "zerolatency", "crf": "26"}


class RecordingError(OSError):
    """The recording cannot go on (disk full, folder read-only or gone)."""


class SegmentRecorder:
    """The annotated (and anonymised) video in segments of segment_s wall-clock seconds, keeping the newest
    keep_segments files of this camera, so the disk never fills however long the watch runs."""

    def __init__(self, folder: Path, camera: str, segment_s: float, keep: int, gap_s: float = 2.0,
                 keyframe_s: float = 1.0, on_error: Callable[[str], None] = lambda reason: None,
                 keep_days: float | None = None, keep_bytes: float | None = None):
        self.folder, self.camera, self.segment_s, self.keep = folder, camera, segment_s, max(1, keep)
        self.keep_days, self.keep_bytes = keep_days, keep_bytes
        self.gap_s, self.keyframe_s, self.on_error = gap_s, keyframe_s, on_error
        self.container: av.container.OutputContainer | None = None
        self.stream: av.video.stream.VideoStream | None = None
        self.size: tuple[int, int] | None = None
        self.started_at = self.last_at = self.keyframe_at = 0.0
        self.last_pts, self.number, self.frames = -1, 0, 0
        self.failed: str | None = None  # why recording stopped

    def segments(self) -> list[Path]:
        return sorted(self.folder.glob(f"{self.camera}_*.mp4"))

    def write(self, image_rgb: np.ndarray, captured_at: float) -> None:
        """One frame, read from the camera at captured_at (seconds since the epoch)."""
        if self.failed:
            return
        try:
            self._write(image_rgb, captured_at)
        except (OSError, av.FFmpegError) as error:
            self._fail(error)

    def _write(self, image_rgb: np.ndarray, captured_at: float) -> None:
        height, width = image_rgb.shape[0] & ~1, image_rgb.shape[1] & ~1  # 4:2:0 needs even sizes
        image_rgb = image_rgb[:height, :width]
        if self.container is None or (width, height) != self.size or captured_at - self.last_at > self.gap_s \
                or captured_at - self.started_at >= self.segment_s - 1e-3:
            self._next_segment((width, height), captured_at)
        assert self.stream is not None and self.container is not None
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image_rgb), format="rgb24")
        frame.pts = max(round((captured_at - self.started_at) * 1000), self.last_pts + 1)
        frame.time_base = MILLISECONDS
        if captured_at - self.keyframe_at >= self.keyframe_s:
            frame.pict_type = av.video.frame.PictureType.I
            self.keyframe_at = captured_at
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.last_pts, self.last_at, self.frames = frame.pts, captured_at, self.frames + 1

    def _next_segment(self, size: tuple[int, int], captured_at: float) -> None:
        self.close()
        self.number += 1
        stamp = datetime.fromtimestamp(captured_at, timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")[:-4] + "Z"
        path = self.folder / f"{self.camera}_{stamp}_{self.number:06d}.mp4"
        self.folder.mkdir(parents=True, exist_ok=True)
        container = av.open(str(path), mode="w", format="mp4", options=FRAGMENTED_MP4)
        stream = container.add_stream("libx264")
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.time_base = stream.codec_context.time_base = MILLISECONDS
        stream.options = dict(X264_OPTIONS)
        self.container, self.stream, self.size = container, stream, size
        self.started_at = self.keyframe_at = captured_at
        self.keyframe_at -= self.keyframe_s  # the segment's first frame is a keyframe
        self.last_pts, self.frames = -1, 0
        self.apply_retention(captured_at, exclude=path)

    def apply_retention(self, now: float, exclude: Path | None = None) -> None:
        """Deletes this camera's oldest segments beyond the newest `keep` (the new one counted), older than
        keep_days, or beyond keep_bytes in all (the segment being written counted)."""
        older = [segment for segment in self.segments() if segment != exclude]  # the new one may not exist yet
        sizes = {segment: segment.stat().st_size for segment in older if segment.exists()}
        total = sum(sizes.values())
        for number, old in enumerate(older):
            why = None
            if len(older) - number > self.keep - 1:
                why = f"{self.keep} segments"
            elif self.keep_days is not None and now - old.stat().st_mtime > self.keep_days * 86400:
                why = f"{self.keep_days:g} days"
            elif self.keep_bytes is not None and total > self.keep_bytes:
                why = f"{self.keep_bytes / 1e9:g} GB"
            if why is None:
                break
            total -= sizes.get(old, 0)
            old.unlink(missing_ok=True)
            log.info("recording: removed %s (retention: %s)", old.name, why)

    def position(self, captured_at: float) -> tuple[str, float] | None:
        """The segment file a frame read at captured_at went into and its time there; None when not recording."""
        if self.container is None or self.failed:
            return None
        return Path(self.container.name).name, captured_at - self.started_at

    def _fail(self, error: BaseException) -> None:
        self.failed = f"{type(error).__name__}: {error}"
        log.error("recording stopped, watching goes on: cannot write to %s: %s", self.folder, error)
        self.on_error(type(error).__name__)
        try:
            self.close()
        except (OSError, av.FFmpegError):
            pass
        self.container = self.stream = None

    def close(self) -> None:
        container, stream = self.container, self.stream
        self.container = self.stream = None
        if container is None or stream is None:
            return
        try:
            for packet in stream.encode(None):
                container.mux(packet)
        finally:
            container.close()
