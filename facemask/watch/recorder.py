"""The annotated video recorded in rotating segments."""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger("facemask.watch")


class SegmentRecorder:
    """The annotated (and anonymised) video in segments of segment_s, keeping the newest keep_segments files of
    this camera, so the disk never fills however long the watch runs."""

    def __init__(self, folder: Path, camera: str, fps: float, segment_s: float, keep: int):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.camera, self.fps, self.keep = folder, camera, fps, max(1, keep)
        self.segment_frames = max(1, round(segment_s * fps))
        self.writer: cv2.VideoWriter | None = None
        self.size: tuple[int, int] | None = None
        self.frames, self.number = 0, 0

    def segments(self) -> list[Path]:
        return sorted(self.folder.glob(f"{self.camera}_*.mp4"))

    def write(self, image_rgb: np.ndarray) -> None:
        size = (image_rgb.shape[1], image_rgb.shape[0])
        if self.writer is None or self.frames >= self.segment_frames or size != self.size:
            self.writer = self._next_segment(size)
        self.writer.write(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def _next_segment(self, size: tuple[int, int]) -> cv2.VideoWriter:
        self.close()
        self.number += 1
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        path = self.folder / f"{self.camera}_{stamp}_{self.number:06d}.mp4"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), self.fps, size)
        self.size, self.frames = size, 0
        for old in self.segments()[:-self.keep]:
            old.unlink(missing_ok=True)
            log.info("recording: removed %s (retention: %d segments)", old.name, self.keep)
        return writer

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None
