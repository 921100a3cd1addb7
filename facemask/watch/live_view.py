"""The latest annotated frame, for the MJPEG clients of the live view."""
from __future__ import annotations

import logging
import threading
import time
from typing import Iterator

import cv2
import numpy as np

log = logging.getLogger("facemask.watch")


class LiveView:
    """The latest annotated frame as JPEG for the MJPEG clients; frames are only encoded while someone watches,
    at most live_fps a second."""

    def __init__(self, live_fps: float):
        self.condition = threading.Condition()
        self.jpeg: bytes | None = None
        self.sequence, self.clients, self.closed = 0, 0, False
        self.interval, self.published_at = 1.0 / max(live_fps, 0.1), 0.0

    def wants_frame(self) -> bool:
        return self.clients > 0 and time.monotonic() - self.published_at >= self.interval

    def publish(self, image_rgb: np.ndarray) -> None:
        jpeg = cv2.imencode(".jpg", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])[1]
        with self.condition:
            self.jpeg, self.sequence, self.published_at = jpeg.tobytes(), self.sequence + 1, time.monotonic()
            self.condition.notify_all()

    def close(self) -> None:
        with self.condition:
            self.closed = True
            self.condition.notify_all()

    def frames(self) -> Iterator[bytes]:
        """New frames as they come, for one client, until the watch stops."""
        with self.condition:
            self.clients += 1
            seen = -1
        try:
            while True:
                with self.condition:
                    def news(seen: int = seen) -> bool:
                        return self.closed or self.sequence != seen

                    self.condition.wait_for(news, timeout=2.0)
                    if self.closed:
                        return
                    if self.sequence == seen or self.jpeg is None:
                        continue
                    seen, jpeg = self.sequence, self.jpeg
                yield jpeg
        finally:
            with self.condition:
                self.clients -= 1
