"""Events as an NVR shows them: a start when the person is counted with an event label, an end when they have left
the view, a snapshot (the frame of the start, blurred as the recordings are), and where the recording has them.

The watch keeps the latest `keep` events in memory for its HTTP API (/events, /events/<id>,
/events/<id>/snapshot.jpg); snapshots are JPEG files in the snapshots folder, deleted with the events that
fall out of memory, so the folder stays as small as the list."""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger("facemask.watch")


def utc_iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="milliseconds")


class EventBook:
    """Open and closed events by id (thread-safe: the analysis writes, the HTTP server and the publisher read)."""

    def __init__(self, snapshot_dir: Path | None, camera: str, end_after_frames: float, keep: int = 1000):
        self.snapshot_dir, self.camera, self.end_after_frames, self.keep = snapshot_dir, camera, end_after_frames, keep
        self.events: OrderedDict[str, dict] = OrderedDict()
        self.open: dict[str, tuple[set[int], int]] = {}  # event id: (the person's tracks, last frame seen)
        self.lock = threading.Lock()
        self.snapshot_failed = False

    def started(self, event: dict, person: set[int], index: int) -> None:
        with self.lock:
            self.events[event["id"]] = {**event, "start": event["time"], "end": None, "snapshot": None,
                                        "recording": None}
            self.open[event["id"]] = (set(person), index)
            while len(self.events) > self.keep:
                old_id, old = self.events.popitem(last=False)
                self.open.pop(old_id, None)
                if old["snapshot"] and self.snapshot_dir is not None:
                    (self.snapshot_dir / old["snapshot"]).unlink(missing_ok=True)

    def seen(self, index: int, captured_at: float, tracks_in_view: set[int], person_of) -> None:
        """A frame analysed: people still in view keep their events open; the others end after end_after_frames."""
        with self.lock:
            for event_id, (person, last) in list(self.open.items()):
                person |= person_of(next(iter(person)))  # the person may have gained tracks since
                if person & tracks_in_view:
                    self.open[event_id] = (person, index)
                elif index - last > self.end_after_frames:
                    self.events[event_id]["end"] = utc_iso(captured_at)
                    del self.open[event_id]

    def end_all(self, captured_at: float) -> None:
        with self.lock:
            for event_id in self.open:
                self.events[event_id]["end"] = utc_iso(captured_at)
            self.open.clear()

    def snapshot(self, event_id: str, picture_rgb: np.ndarray, recording: tuple[str, float] | None) -> None:
        """The published (blurred, drawn) picture of the event's start frame; called by the publisher."""
        with self.lock:
            event = self.events.get(event_id)
        if event is None:
            return
        if recording is not None:
            event["recording"] = {"file": recording[0], "offset_s": round(recording[1], 3)}
        if self.snapshot_dir is None:
            return
        name = f"{self.camera}_{event_id}.jpg"
        try:
            self.snapshot_dir.mkdir(parents=True, exist_ok=True)
            ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(picture_rgb, cv2.COLOR_RGB2BGR),
                                    [cv2.IMWRITE_JPEG_QUALITY, 85])
            (self.snapshot_dir / name).write_bytes(jpeg.tobytes())
            event["snapshot"] = name
        except OSError as error:
            if not self.snapshot_failed:
                log.error("cannot write event snapshots to %s: %s", self.snapshot_dir, error)
                self.snapshot_failed = True

    def listing(self, limit: int = 100) -> list[dict]:
        """The latest events, newest first, as the API shows them."""
        with self.lock:
            events = list(self.events.values())[-limit:][::-1]
        return [self.public(event) for event in events]

    def get(self, event_id: str) -> dict | None:
        with self.lock:
            event = self.events.get(event_id)
        return None if event is None else self.public(event)

    def snapshot_path(self, event_id: str) -> Path | None:
        with self.lock:
            event = self.events.get(event_id)
        if event is None or not event["snapshot"] or self.snapshot_dir is None:
            return None
        return self.snapshot_dir / event["snapshot"]

    @staticmethod
    def public(event: dict) -> dict:
        shown = {key: value for key, value in event.items() if key != "thumbnail_jpeg_base64"}
        shown["snapshot_url"] = f"/events/{event['id']}/snapshot.jpg" if event["snapshot"] else None
        return shown
