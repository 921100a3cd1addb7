"""Finished frames anonymised, drawn, recorded and streamed on a thread of their own."""
from __future__ import annotations

import logging
import queue
import threading

from facemask.core.drawing import draw_faces
from facemask.core.privacy import anonymize
from facemask.video.output import FinishedFrame
from facemask.watch.clips import EventClips
from facemask.watch.cover import FaceCover
from facemask.watch.event_book import EventBook
from facemask.watch.live_view import LiveView
from facemask.watch.recorder import SegmentRecorder
from facemask.watch.zone import Zone

log = logging.getLogger("facemask.watch")


class Publisher:
    """Anonymises, draws, records and streams finished frames on a thread of its own (OpenCV releases the GIL),
    so the analysis of the next frames goes on meanwhile. Every frame goes through the FaceCover, which holds it
    until it knows what to blur there (facemask/watch/cover.py)."""

    def __init__(self, privacy: str, recorder: SegmentRecorder | None, live: LiveView,
                 event_book: EventBook | None = None, zone: Zone | None = None, clips: EventClips | None = None):
        self.privacy, self.recorder, self.live, self.event_book = privacy, recorder, live, event_book
        self.zone, self.clips = zone, clips
        self.cover = FaceCover()
        self.queue: queue.Queue = queue.Queue(maxsize=8)
        self.failure_logged = False
        self.thread = threading.Thread(target=self._run, name="publish", daemon=True)
        self.thread.start()

    def put(self, frame: FinishedFrame) -> None:
        self.queue.put(frame)  # always: the cover learns where faces are from every frame

    def _run(self) -> None:
        while (frame := self.queue.get()) is not None:
            self._publish_all(self.cover.push(frame))
        self._publish_all(self.cover.flush())

    def _publish_all(self, frames: list[tuple[FinishedFrame, list]]) -> None:
        for frame, boxes in frames:
            try:
                self._publish(frame, boxes)
            except Exception as error:  # noqa: BLE001 (a full disk must not stop the watch: counts and events go on)
                if not self.failure_logged:
                    log.error("recording or live view failed: %s: %s", type(error).__name__, error)
                    self.failure_logged = True

    def _publish(self, frame: FinishedFrame, boxes: list) -> None:
        streamed = self.live.wants_frame()
        snapshots = frame.record.get("snapshots", ()) if self.event_book is not None else ()
        if self.recorder is None and not streamed and not snapshots:
            return
        picture = anonymize(frame.image, boxes, self.privacy)
        drawn = draw_faces(picture, frame.shown)
        if self.zone is not None:
            drawn = self.zone.draw(drawn)
        if self.recorder is not None:
            self.recorder.write(drawn, frame.record["captured_at"])
            if self.clips is not None:
                self.clips.recorded(frame.record["captured_at"])
        if snapshots and self.event_book is not None:
            position = self.recorder.position(frame.record["captured_at"]) if self.recorder is not None else None
            for event_id in snapshots:
                self.event_book.snapshot(event_id, drawn, position)
        if streamed:
            self.live.publish(drawn)

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.recorder is not None:
            self.recorder.close()
        if self.clips is not None:
            self.clips.close()
