"""Frames of a live camera for the watch, in real time: read as fast as the camera sends them, analysed at most
max_fps a second (a detect rate, as NVRs have), and never a backlog.

A reading thread keeps only the newest frame. The analysis takes it when it is ready for the next one; every
frame it had no time for, or that came sooner than max_fps allows, is skipped before any analysis and counted.
So a machine slower than the camera analyses fewer frames of the present instead of every frame of a growing
past: tracks see time pass as it does, and a person is not split into two because their frames came late.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np


@dataclass
class CapturedFrame:
    image: np.ndarray
    captured_at: float  # wall clock (time.time()) when it was read from the camera


class LatestFrames:
    """Iterate for the frames to analyse (CapturedFrame); `read` and `skipped` count the camera's frames."""

    def __init__(self, frames: Iterator[np.ndarray], max_fps: float | None = None):
        self.interval = 1.0 / max_fps if max_fps else 0.0
        self.condition = threading.Condition()
        self.latest: CapturedFrame | None = None
        self.read = self.skipped = 0
        self.late = 0  # of the skipped: those the analysis had no time for (not those above max_fps)
        self.ended = False
        self.error: BaseException | None = None
        self.stopping = False
        self._due = 0.0
        self.thread = threading.Thread(target=self._pump, args=(frames,), name="camera", daemon=True)
        self.thread.start()

    def _pump(self, frames: Iterator[np.ndarray]) -> None:
        try:
            for image in frames:
                now = time.time()
                with self.condition:
                    if self.stopping:
                        return
                    self.read += 1
                    if self.interval and now < self._due:
                        self.skipped += 1  # sooner than the analysis rate allows
                        continue
                    # The next frame is due one interval after this one was due (not after it came), so a camera
                    # whose frames do not divide the rate evenly still gives max_fps on average.
                    self._due = max(self._due + self.interval, now - self.interval)
                    if self.latest is not None:
                        self.skipped += 1  # the analysis had no time for it
                        self.late += 1
                    self.latest = CapturedFrame(image, now)
                    self.condition.notify_all()
        except BaseException as error:  # noqa: BLE001 (raised in the analysing thread)
            self.error = error
        finally:
            with self.condition:
                self.ended = True
                self.condition.notify_all()

    def __iter__(self) -> Iterator[CapturedFrame]:
        while True:
            with self.condition:
                self.condition.wait_for(lambda: self.latest is not None or self.ended)
                frame, self.latest = self.latest, None
                if frame is None:
                    if self.error is not None:
                        raise self.error
                    return
            yield frame

    def stop(self) -> None:
        """Stop reading and wait for the thread, so the source can be closed safely."""
        with self.condition:
            self.stopping = True
            self.condition.notify_all()
        self.thread.join()
