"""Prometheus metrics of one watch."""
from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

log = logging.getLogger("facemask.watch")


class WatchMetrics:
    """Prometheus metrics of one watch (one camera), served at /metrics of the live view."""

    def __init__(self, camera: str):
        self.registry = CollectorRegistry()
        self.camera = camera
        self._people = Counter("facemask_watch_people", "People counted, by steady label when counted",
                               ["camera", "label"], registry=self.registry)
        self._frames = Counter("facemask_watch_frames", "Frames analysed", ["camera"], registry=self.registry)
        self._fps = Gauge("facemask_watch_frames_per_second", "Frames analysed per second, over the last seconds",
                          ["camera"], registry=self.registry)
        self._reconnects = Counter("facemask_watch_reconnects", "Times the source came back after a drop",
                                   ["camera"], registry=self.registry)
        self._connected = Gauge("facemask_watch_connected", "1 while the source delivers frames", ["camera"],
                                registry=self.registry)
        self._events = Counter("facemask_watch_events", "Events by outcome: raised, sent (webhook), failed "
                               "(webhook gave up), dropped (webhook queue full)", ["camera", "outcome"],
                               registry=self.registry)
        self._in_view = Gauge("facemask_watch_faces_in_view", "Faces shown in the latest frame, by label",
                              ["camera", "label"], registry=self.registry)
        self._labels_in_view: set[str] = set()
        for outcome in ("raised", "sent", "failed", "dropped"):
            self._events.labels(camera, outcome)
        self._frames.labels(camera)
        self._reconnects.labels(camera)

    def person(self, label: str) -> None:
        self._people.labels(self.camera, label).inc()

    def frame(self) -> None:
        self._frames.labels(self.camera).inc()

    def frames_per_second(self, value: float) -> None:
        self._fps.labels(self.camera).set(value)

    def reconnected(self) -> None:
        self._reconnects.labels(self.camera).inc()

    def connected(self, value: bool) -> None:
        self._connected.labels(self.camera).set(int(value))

    def event(self, outcome: str) -> None:
        self._events.labels(self.camera, outcome).inc()

    def in_view(self, counts: dict[str, int]) -> None:
        self._labels_in_view |= set(counts)
        for label in self._labels_in_view:
            self._in_view.labels(self.camera, label).set(counts.get(label, 0))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
