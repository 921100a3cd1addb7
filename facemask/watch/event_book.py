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
from typing import Callable

import cv2
import numpy as np

log = logging.getLogger("facemask.watch")


def utc_iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="milliseconds")


def event_end(event: dict, last_seen: float, reason: str) -> dict:
    """The record that closes an event: the start's id, camera, person and label, when the person was last seen,
    and how long the event lasted (from its start frame to that last sighting)."""
    return {"id": event["id"], "type": "end", "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "camera": event["camera"], "track_id": event["track_id"], "label": event["label"],
            "start": event["start"], "end": utc_iso(last_seen),
            "duration_s": round(max(0.0, last_seen - event["started_at"]), 3), "reason": reason}


class EventBook:
    """Open and closed events by id (thread-safe: the analysis writes, the HTTP server and the publisher read).
    An event that ends is handed to on_end as its end record (event_end), from the analysis thread."""

    def __init__(self, snapshot_dir: Path | None, camera: str, end_after_frames: float, keep: int = 1000,
                 on_end: Callable[[dict], None] | None = None):
        self.snapshot_dir, self.camera, self.end_after_frames, self.keep = snapshot_dir, camera, end_after_frames, keep
        self.on_end = on_end
        self.events: OrderedDict[str, dict] = OrderedDict()
        # event id: (the person's tracks, the last frame they were seen in, and its capture time)
        self.open: dict[str, tuple[set[int], int, float]] = {}
        self.lock = threading.Lock()
        self.snapshot_failed = False

    def started(self, event: dict, person: set[int], index: int, captured_at: float) -> None:
        with self.lock:
            kept = {key: value for key, value in event.items() if key != "type"}
            self.events[event["id"]] = {**kept, "start": utc_iso(captured_at), "started_at": captured_at,
                                        "end": None, "duration_s": None, "snapshot": None, "recording": None,
                                        "clip": None, "clip_s": None}
            self.open[event["id"]] = (set(person), index, captured_at)
            while len(self.events) > self.keep:
                old_id, old = self.events.popitem(last=False)
                self.open.pop(old_id, None)
                for kept_file in (old["snapshot"], old["clip"]):
                    if kept_file and self.snapshot_dir is not None:
                        (self.snapshot_dir / kept_file).unlink(missing_ok=True)

    def seen(self, index: int, captured_at: float, tracks_in_view: set[int], person_of) -> None:
        """A frame analysed: people still in view keep their events open; the others end after end_after_frames,
        their end the last frame they were seen in."""
        ended = []
        with self.lock:
            for event_id, (person, last, last_seen) in list(self.open.items()):
                person |= person_of(next(iter(person)))  # the person may have gained tracks since
                if person & tracks_in_view:
                    self.open[event_id] = (person, index, captured_at)
                elif index - last > self.end_after_frames:
                    ended.append(self._close(event_id, last_seen, "left"))
        self._announce(ended)

    def end_all(self, reason: str = "stopped") -> None:
        """Every open event ends at its person's last sighting (the watch stops)."""
        with self.lock:
            ended = [self._close(event_id, last_seen, reason)
                     for event_id, (_, _, last_seen) in list(self.open.items())]
        self._announce(ended)

    def _close(self, event_id: str, last_seen: float, reason: str) -> dict:
        event = self.events[event_id]
        del self.open[event_id]
        end = event_end(event, last_seen, reason)
        event["end"], event["duration_s"] = end["end"], end["duration_s"]
        return end

    def _announce(self, ended: list[dict]) -> None:
        if self.on_end is not None:
            for end in ended:
                self.on_end(end)

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

    def clip(self, event_id: str, name: str, pre_s: float, length_s: float) -> None:
        """The event's clip (a file in the snapshots folder, EventClips) is written; one whose event has fallen
        out of memory meanwhile is deleted."""
        with self.lock:
            event = self.events.get(event_id)
            if event is not None:
                event["clip"], event["clip_s"] = name, {"before_start": pre_s, "length": length_s}
        if event is None and self.snapshot_dir is not None:
            (self.snapshot_dir / name).unlink(missing_ok=True)

    def listing(self, limit: int = 100) -> list[dict]:
        """The latest events, newest first, as the API shows them."""
        with self.lock:
            events = list(self.events.values())[-limit:][::-1]
        return [self.public(event) for event in events]

    def get(self, event_id: str) -> dict | None:
        with self.lock:
            event = self.events.get(event_id)
        return None if event is None else self.public(event)

    def file_path(self, event_id: str, kind: str) -> Path | None:
        """The event's "snapshot" or "clip" file, None while it has none."""
        with self.lock:
            event = self.events.get(event_id)
        if event is None or not event[kind] or self.snapshot_dir is None:
            return None
        return self.snapshot_dir / event[kind]

    @staticmethod
    def public(event: dict) -> dict:
        shown = {key: value for key, value in event.items() if key not in ("thumbnail_jpeg_base64", "started_at")}
        shown["snapshot_url"] = f"/events/{event['id']}/snapshot.jpg" if event["snapshot"] else None
        shown["clip_url"] = f"/events/{event['id']}/clip.mp4" if event["clip"] else None
        return shown
