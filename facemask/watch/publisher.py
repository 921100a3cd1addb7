"""Finished frames anonymised, drawn, recorded and streamed on a thread of their own."""
from __future__ import annotations

import logging
import queue
import threading

from facemask.core.drawing import draw_faces
from facemask.core.privacy import anonymize
from facemask.video.output import FinishedFrame
from facemask.watch.live_view import LiveView
from facemask.watch.recorder import SegmentRecorder

log = logging.getLogger("facemask.watch")


class Publisher:
    """Anonymises, draws, records and streams finished frames on a thread of its own (OpenCV releases the GIL),
    so the analysis of the next frames goes on meanwhile."""

    def __init__(self, privacy: str, recorder: SegmentRecorder | None, live: LiveView):
        self.privacy, self.recorder, self.live = privacy, recorder, live
        self.queue: queue.Queue = queue.Queue(maxsize=8)
        self.failure_logged = False
        self.thread = threading.Thread(target=self._run, name="publish", daemon=True)
        self.thread.start()

    def put(self, frame: FinishedFrame) -> None:
        if self.recorder is not None or self.live.clients:
            self.queue.put(frame)

    def _run(self) -> None:
        while (frame := self.queue.get()) is not None:
            try:
                self._publish(frame)
            except Exception as error:  # noqa: BLE001 (a full disk must not stop the watch: counts and events go on)
                if not self.failure_logged:
                    log.error("recording or live view failed: %s: %s", type(error).__name__, error)
                    self.failure_logged = True

    def _publish(self, frame: FinishedFrame) -> None:
        streamed = self.live.wants_frame()
        if self.recorder is None and not streamed:
            return
        picture = anonymize(frame.image, [face.box for face in frame.record["faces"]], self.privacy)
        drawn = draw_faces(picture, frame.shown)
        if self.recorder is not None:
            self.recorder.write(drawn)
        if streamed:
            self.live.publish(drawn)

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.recorder is not None:
            self.recorder.close()
