"""Watch a camera all day: reconnects, one event per person, a live view, Prometheus metrics, privacy.

    python -m facemask.watch --source rtsp://door-cam/stream --camera door --listen 0.0.0.0:8100 \\
        --events events.jsonl --webhook http://alerts.local/facemask --record recordings/

A thin layer over the video path of infer.py (facemask.video.VideoAnnotator: detect, follow, track, classify;
facemask.video_source.ReadAhead: decoding ahead):
- the source (any OpenCV source: camera index, rtsp://, http:// MJPEG, a file) is reopened with backoff whenever
  it drops; the annotator lives on, so track ids and people counts carry on across a short drop;
- a person is counted once, when their track passes the same rule infer.py counts people by, and raises one
  event (JSON Lines, and a webhook posted from a bounded queue on a thread of its own) the first time their steady
  label is one of --event-labels;
- what leaves the process as pictures (recordings in rotating segments, the live view at /) has every face
  blurred or pixelated unless --privacy none; events carry a face thumbnail only with --thumbnails.
docs/watch.md says how to run one watch per camera under compose and Kubernetes.

Exit codes: 0 a file source ended; 2 bad arguments, a file source that cannot be read, or a listen address in use;
130 / 143 stopped by SIGINT / SIGTERM (the event queue is given a few seconds to drain, recordings are closed).
"""
from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import queue
import re
import signal
import sys
import threading
import time
import uuid
from collections import Counter as Tally
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

# OpenCV and FFmpeg would log their own lines at every drop; the watch says what happened in one line of its own.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import requests  # noqa: E402
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest  # noqa: E402

from facemask.boxes import longest_side  # noqa: E402
from facemask.classes import INCORRECT, WITHOUT_MASK  # noqa: E402
from facemask.detector import DEFAULT_SCORE_THRESHOLD, create_detector  # noqa: E402
from facemask.drawing import draw_faces  # noqa: E402
from facemask.pipeline import ClassifierClient, MaskPipeline  # noqa: E402
from facemask.privacy import PRIVACY_MODES, anonymize  # noqa: E402
from facemask.results import UNCLASSIFIED, FaceResult  # noqa: E402
from facemask.runner import StopSignals  # noqa: E402
from facemask.settings import Settings, SettingsError  # noqa: E402
from facemask.video import VIDEO_DETECT_OPTIONS, VideoAnnotator  # noqa: E402
from facemask.video_output import FinishedFrame  # noqa: E402
from facemask.video_source import ReadAhead, VideoSource, VideoSourceError, describe_source  # noqa: E402
from facemask.video_tracks import VideoSettings  # noqa: E402

log = logging.getLogger("facemask.watch")
DEFAULT_EVENT_LABELS = (WITHOUT_MASK, INCORRECT)


@dataclass
class WatchOptions:
    camera: str = "camera"
    event_labels: tuple[str, ...] = DEFAULT_EVENT_LABELS
    events_path: Path | None = None  # JSON Lines, one event per line
    webhook_url: str | None = None
    webhook_timeout_s: float = 10.0
    webhook_queue: int = 1000  # events waiting for the webhook; more are dropped (and stay in the JSON Lines)
    webhook_retry_min_s: float = 0.5  # first pause before an event is tried again, doubled each time
    webhook_retry_max_s: float = 10.0  # longest pause between two tries of one event
    webhook_give_up_s: float = 3600.0  # an event not delivered within this long is given up (counted failed)
    thumbnails: bool = False
    privacy: str = "blur"
    record_dir: Path | None = None
    segment_s: float = 300.0
    keep_segments: int = 24
    live_fps: float = 10.0
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 4.0  # with the stream back, the watch resumes within this long (+ the open itself)
    stream_timeout_s: float = 10.0  # a stream that stalls this long without closing counts as dropped


def redacted(source: str) -> str:
    """The source as logs and /counts show it: a password in an rtsp://user:password@host URL is not repeated."""
    parts = urlsplit(source)
    if parts.password is None:
        return source
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


# ------------------------------------------------------------------------------------------------------ metrics
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


# ------------------------------------------------------------------------------------------------------- events
class EventLog:
    """Events as JSON Lines, flushed line by line: complete after a kill, readable while the watch runs."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(path, "a", encoding="utf-8")

    def write(self, event: dict) -> None:
        self.handle.write(json.dumps(event) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


class WebhookSender:
    """POSTs events (JSON) to a URL from a thread of its own, in order, so a slow or dead receiver never holds up
    the video. Each event is retried with exponential backoff until it is delivered or webhook_give_up_s old;
    while one is retried the others wait behind it in a bounded queue, and an event that finds the queue full is
    dropped (it stays in the JSON Lines). Every request carries the event id as Idempotency-Key: a receiver that
    answers later than the timeout may get an event again, and can tell it by its id."""

    def __init__(self, url: str, options: WatchOptions, metrics: WatchMetrics):
        self.url, self.options, self.metrics = url, options, metrics
        self.queue: queue.Queue = queue.Queue(maxsize=options.webhook_queue)
        self.session = requests.Session()
        self.sent = self.failed = self.dropped = 0
        self._stop_at: float | None = None
        self.thread = threading.Thread(target=self._run, name="webhook", daemon=True)
        self.thread.start()

    def submit(self, event: dict) -> None:
        try:
            self.queue.put_nowait((time.monotonic(), event))
        except queue.Full:
            self.dropped += 1
            self.metrics.event("dropped")
            log.warning("webhook queue full (%d events): event %s dropped (kept in the events file)",
                        self.options.webhook_queue, event["id"])

    def _stopping(self) -> bool:
        return self._stop_at is not None and time.monotonic() >= self._stop_at

    def _run(self) -> None:
        while not (self._stop_at is not None and (self.queue.empty() or self._stopping())):
            try:
                queued_at, event = self.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            outcome = self._deliver(queued_at, event)
            if outcome == "sent":
                self.sent += 1
            else:
                self.failed += 1
            self.metrics.event(outcome)

    def _deliver(self, queued_at: float, event: dict) -> str:
        pause, tries, timeout = self.options.webhook_retry_min_s, 0, self.options.webhook_timeout_s
        while True:
            tries += 1
            try:
                response = self.session.post(self.url, json=event, timeout=(min(3.0, timeout), timeout),
                                             headers={"Idempotency-Key": event["id"]})
                if response.status_code < 300:
                    if tries > 1:
                        log.info("webhook: event %s delivered after %d tries", event["id"], tries)
                    return "sent"
                error = f"HTTP {response.status_code}"
                if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
                    log.error("webhook refused event %s (%s): not retried", event["id"], error)
                    return "failed"
            except requests.RequestException as failure:
                error = type(failure).__name__
            if tries == 1:
                log.warning("webhook: event %s not delivered (%s); retrying with backoff", event["id"], error)
            waited = time.monotonic() - queued_at
            if waited + pause > self.options.webhook_give_up_s or self._stopping():
                log.error("webhook: event %s given up after %d tries in %.0f s (%s); it is in the events file",
                          event["id"], tries, waited, error)
                return "failed"
            time.sleep(pause)
            pause = min(pause * 2, self.options.webhook_retry_max_s)

    def close(self, drain_s: float = 5.0) -> None:
        """Give the queue drain_s to empty, then stop; what is left is logged (it is in the events file)."""
        self._stop_at = time.monotonic() + drain_s
        self.thread.join(drain_s + self.options.webhook_timeout_s + 1.0)
        if self.queue.qsize():
            log.warning("webhook: %d event(s) not delivered at shutdown (they are in the events file)",
                        self.queue.qsize())


# ---------------------------------------------------------------------------------------------- pictures out
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


# -------------------------------------------------------------------------------------------------- the watch
class Watch:
    """One camera: reads, annotates, counts, raises events and publishes pictures until should_stop() says why."""

    def __init__(self, pipeline: MaskPipeline, source: str, options: WatchOptions,
                 video_settings: VideoSettings | None = None):
        self.pipeline, self.source, self.options = pipeline, source, options
        self.video_settings = video_settings or VideoSettings()
        self.metrics = WatchMetrics(options.camera)
        self.live = LiveView(options.live_fps)
        self.events_log = EventLog(options.events_path) if options.events_path else None
        self.webhook = WebhookSender(options.webhook_url, options, self.metrics) if options.webhook_url else None
        self.publisher: Publisher | None = None
        self.annotator: VideoAnnotator | None = None
        self.connected, self.reconnects, self.frames, self.fps = False, 0, 0, 0.0
        self.people: Tally = Tally()
        self.in_view: dict[str, int] = {}
        self.track_ids_in_view: list[int] = []
        self.counted: set[int] = set()
        self.evented: set[int] = set()
        self.events_raised = 0
        self.started = utc_now()
        self._rate_started, self._rate_frames = time.monotonic(), 0

    # ---------------------------------------------------------------------------------- source and reconnects
    def _open(self, should_stop: Callable[[], str | None]) -> VideoSource | None:
        """The source, reopened with exponential backoff while it cannot be; None when stopped meanwhile."""
        pause, tries = self.options.reconnect_min_s, 0
        while not should_stop():
            tries += 1
            try:
                return VideoSource(self.source, stream_timeout_s=self.options.stream_timeout_s)
            except VideoSourceError as error:
                if describe_source(self.source)[0] == "file":
                    raise
                if tries == 1 or tries % 10 == 0:
                    log.warning("%s; trying again (try %d, next in %.1f s)", error, tries, pause)
                self._pause(pause, should_stop)
                pause = min(pause * 2, self.options.reconnect_max_s)
        return None

    @staticmethod
    def _pause(seconds: float, should_stop: Callable[[], str | None]) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not should_stop():
            time.sleep(0.05)

    def run(self, should_stop: Callable[[], str | None] = lambda: None) -> str | None:
        """Watch until should_stop() returns a reason (returned), or a file source ends (None)."""
        lost_at, pause = None, self.options.reconnect_min_s
        try:
            while True:
                source = self._open(should_stop)
                if source is None:
                    return should_stop()
                stopped, delivered = self._watch(source, should_stop, lost_at)
                if stopped or source.kind == "file":
                    return stopped
                if delivered:
                    lost_at, pause = time.monotonic(), self.options.reconnect_min_s
                    self._set_connected(False)
                    log.warning("source lost after %d frame(s); reconnecting with backoff", delivered)
                else:  # it opens but sends nothing (a camera still booting): wait before the next try
                    self._pause(pause, should_stop)
                    pause = min(pause * 2, self.options.reconnect_max_s)
        finally:
            if self.annotator is not None:
                self._finished(self.annotator.flush())

    def _watch(self, source: VideoSource, should_stop: Callable[[], str | None],
               lost_at: float | None) -> tuple[str | None, int]:
        if self.annotator is None:
            log.info("watching %s (%s, %.0f frames/s) as camera %r", redacted(self.source), source.kind,
                     source.fps, self.options.camera)
            self.annotator = VideoAnnotator(self.pipeline, source.fps, self.video_settings)
            recorder = None
            if self.options.record_dir is not None:
                recorder = SegmentRecorder(self.options.record_dir, self.options.camera, source.fps,
                                           self.options.segment_s, self.options.keep_segments)
            self.publisher = Publisher(self.options.privacy, recorder, self.live)
        reader = ReadAhead(source.frames(), self.annotator.timing)
        delivered, stopped = 0, None
        try:
            for image in reader:
                if not delivered:
                    self._set_connected(True)
                    if lost_at is not None:
                        self.reconnects += 1
                        self.metrics.reconnected()
                        log.info("source back after %.1f s: watching again; track ids and counts carry on",
                                 time.monotonic() - lost_at)
                delivered += 1
                self._finished(self.annotator.push(image))
                stopped = should_stop()
                if stopped:
                    break
        finally:
            reader.stop()
            source.close()
        return stopped, delivered

    def _set_connected(self, value: bool) -> None:
        self.connected = value
        self.metrics.connected(value)
        # frames/s restarts its count with the source: no stale rate while it is away, no outage averaged in
        self._rate_started, self._rate_frames = time.monotonic(), self.frames
        if not value:
            self.fps = 0.0
            self.metrics.frames_per_second(0.0)

    # ------------------------------------------------------------------------------------------- people, events
    def _finished(self, frames: list[FinishedFrame]) -> None:
        for frame in frames:
            self.frames += 1
            self.metrics.frame()
            self.in_view = dict(Tally(face.label for face in frame.shown))
            self.track_ids_in_view = sorted(face.track_id for face in frame.shown if face.track_id is not None)
            self.metrics.in_view(self.in_view)
            for face in frame.shown:
                self._person(face, frame)
            if self.publisher is not None:
                self.publisher.put(frame)
            if self.frames % 250 == 0:
                self._retire_tracks()
        now = time.monotonic()
        if now - self._rate_started >= 2.0:
            self.fps = (self.frames - self._rate_frames) / (now - self._rate_started)
            self.metrics.frames_per_second(self.fps)
            self._rate_started, self._rate_frames = now, self.frames

    def _person(self, face: FaceResult, frame: FinishedFrame) -> None:
        if self.annotator is None or face.track_id is None:
            return
        book = self.annotator.book
        track = book.tracks.get(face.track_id)
        if track is None or face.label == UNCLASSIFIED or not book.counts_as_person(track):
            return
        if track.track_id not in self.counted:
            self.counted.add(track.track_id)
            self.people[face.label] += 1
            self.metrics.person(face.label)
        if track.track_id not in self.evented and face.label in self.options.event_labels:
            self.evented.add(track.track_id)
            self._raise(face, frame)

    def _raise(self, face: FaceResult, frame: FinishedFrame) -> None:
        event = {"id": uuid.uuid4().hex, "time": utc_now(), "camera": self.options.camera,
                 "track_id": face.track_id, "label": face.label, "probability": face.score,
                 "probabilities": face.probabilities, "frame": frame.record["frame"]}
        if self.options.thumbnails:
            event["thumbnail_jpeg_base64"] = thumbnail(frame.image, face.box)
        self.events_raised += 1
        self.metrics.event("raised")
        log.info("event %s: track #%d %s (%.2f)", event["id"], face.track_id, face.label, face.score or 0.0)
        if self.events_log is not None:
            try:
                self.events_log.write(event)
            except OSError as error:  # a full disk: the webhook still gets the event
                log.error("cannot write event %s to the events file: %s", event["id"], error)
        if self.webhook is not None:
            self.webhook.submit(event)

    def _retire_tracks(self) -> None:
        """Forget people long gone, so memory stays flat all day. A track is kept while it could still come back
        (the tracker's patience, re-identification) plus a margin; one that qualified but never got a label is
        counted as unclassified when it goes."""
        annotator, settings = self.annotator, self.video_settings
        if annotator is None:
            return
        horizon = (max(settings.reid_s, settings.max_missing_s) + 2.0) * annotator.fps
        for person, track in annotator.book.retire(annotator.index, horizon).items():
            if person not in self.counted and annotator.book.counts_as_person(track):
                self.people[UNCLASSIFIED] += 1
                self.metrics.person(UNCLASSIFIED)
            self.counted.discard(person)
            self.evented.discard(person)
        if len(annotator.errors) > 100:  # classifier errors by frame: keep the latest few for the log
            annotator.errors = dict(list(annotator.errors.items())[-20:])

    # ------------------------------------------------------------------------------------------------- status
    def status(self) -> dict:
        """What /counts answers."""
        events = {"raised": self.events_raised}
        if self.webhook is not None:
            events.update(sent=self.webhook.sent, failed=self.webhook.failed, dropped=self.webhook.dropped,
                          queued=self.webhook.queue.qsize())
        return {"camera": self.options.camera, "source": redacted(self.source), "connected": self.connected,
                "since": self.started, "frames": self.frames, "frames_per_second": round(self.fps, 2),
                "reconnects": self.reconnects, "in_view": self.in_view, "track_ids_in_view": self.track_ids_in_view,
                "people": {"total": sum(self.people.values()), "by_label": dict(sorted(dict(self.people).items()))},
                "events": events, "privacy": self.options.privacy}

    def close(self) -> None:
        self.live.close()
        if self.publisher is not None:
            self.publisher.close()
        if self.webhook is not None:
            self.webhook.close()
        if self.events_log is not None:
            self.events_log.close()


def thumbnail(image_rgb: np.ndarray, box, size: int = 128) -> str:
    """The face and a margin around it, at most `size` px, as base64 JPEG (only with --thumbnails)."""
    x1, y1, x2, y2 = box
    grow = 0.2 * longest_side(box)
    height, width = image_rgb.shape[:2]
    x1, y1 = int(max(0, x1 - grow)), int(max(0, y1 - grow))
    x2, y2 = int(min(width, x2 + grow)), int(min(height, y2 + grow))
    crop = image_rgb[y1:y2, x1:x2]
    scale = min(1.0, size / max(crop.shape[:2]))
    if scale < 1.0:
        crop = cv2.resize(crop, (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))),
                          interpolation=cv2.INTER_AREA)
    jpeg = cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])[1]
    return base64.b64encode(jpeg.tobytes()).decode("ascii")


# ---------------------------------------------------------------------------------------------- HTTP server
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Live view: {camera}</title>
<style>body{{font-family:system-ui,sans-serif;margin:1rem;max-width:70rem}} img{{max-width:100%;height:auto;
background:#222}} ul{{list-style:none;padding:0;display:flex;gap:1rem;flex-wrap:wrap}} li{{padding:.2rem .6rem;
border-radius:.3rem;background:#eee}}</style></head>
<body><h1>Live view: {camera}</h1>
<p id="state">Connecting...</p>
<img id="live" src="/stream.mjpg" alt="Annotated live view of camera {camera}" width="640" height="480">
<h2>In view</h2><ul id="in-view"></ul>
<h2>People counted</h2><ul id="people"></ul>
<script>
function chips(list, counts) {{
  list.replaceChildren(...Object.entries(counts).map(([label, n]) => {{
    const item = document.createElement("li"); item.dataset.label = label; item.textContent = label + ": " + n;
    return item; }}));
}}
async function refresh() {{
  try {{
    const status = await (await fetch("/counts")).json();
    document.getElementById("state").textContent = (status.connected ? "Watching" : "Source lost, reconnecting")
      + " - " + status.frames_per_second + " frames/s, " + status.people.total + " people, "
      + status.reconnects + " reconnect(s)";
    chips(document.getElementById("in-view"), status.in_view);
    chips(document.getElementById("people"), status.people.by_label);
  }} catch (error) {{ document.getElementById("state").textContent = "The watch is not answering"; }}
}}
refresh(); setInterval(refresh, 1000);
</script></body></html>
"""


def make_server(watch: Watch, host: str, port: int) -> ThreadingHTTPServer:
    page = PAGE.format(camera=watch.options.camera.replace("<", "").replace(">", "")).encode()

    class LiveViewHandler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, value: dict) -> None:
            self._send(status, json.dumps(value).encode(), "application/json")

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path == "/":
                self._send(200, page, "text/html; charset=utf-8")
            elif path == "/counts":
                self._json(200, watch.status())
            elif path == "/metrics":
                self._send(200, watch.metrics.exposition(), CONTENT_TYPE_LATEST)
            elif path == "/health":
                self._json(200, {"status": "ok"})
            elif path == "/ready":
                self._json(200 if watch.connected else 503, {"connected": watch.connected})
            elif path == "/stream.mjpg":
                self._stream()
            else:
                self._json(404, {"error": f"no such page: {path}", "status": 404})

        def _stream(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            try:
                for jpeg in watch.live.frames():
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n"
                                     % (len(jpeg), jpeg))
            except (BrokenPipeError, ConnectionResetError):
                return

    server = ThreadingHTTPServer((host, port), LiveViewHandler)
    server.daemon_threads = True
    return server


# -------------------------------------------------------------------------------------------------- the CLI
def parse_listen(text: str) -> tuple[str, int] | None:
    if text.lower() in ("", "none", "off"):
        return None
    host, _, port = text.rpartition(":")
    if not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT (e.g. 0.0.0.0:8100) or none, got {text!r}")
    return host or "127.0.0.1", int(port)


def camera_name(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", text):
        raise argparse.ArgumentTypeError(f"camera names are letters, digits, '.', '_' and '-', got {text!r}")
    return text


def parse_args(argv=None) -> argparse.Namespace:
    defaults = WatchOptions()
    parser = argparse.ArgumentParser(prog="python -m facemask.watch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True, help="camera index (0), stream URL (rtsp://, http://) or file")
    parser.add_argument("--camera", type=camera_name, default=None,
                        help="this camera's name in events, metrics and file names (default: from the source)")
    parser.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 8100),
                        help="live view, /counts, /metrics, /health, /ready: HOST:PORT (default 127.0.0.1:8100; "
                             "0.0.0.0:8100 in a container), or none")
    parser.add_argument("--events", type=Path, default=None, help="append events to this JSON Lines file")
    parser.add_argument("--webhook", default=None, help="POST every event (JSON) to this URL")
    parser.add_argument("--event-labels", default=",".join(DEFAULT_EVENT_LABELS),
                        help="labels that raise an event, comma-separated ('' for none; default: %(default)s)")
    parser.add_argument("--webhook-queue", type=int, default=defaults.webhook_queue,
                        help="events waiting for the webhook before new ones are dropped")
    parser.add_argument("--webhook-timeout", type=float, default=defaults.webhook_timeout_s,
                        help="seconds one webhook request may take")
    parser.add_argument("--webhook-give-up", type=float, default=defaults.webhook_give_up_s,
                        help="seconds an event is retried before it is given up")
    parser.add_argument("--thumbnails", action="store_true",
                        help="put a JPEG of the face (not anonymised) in each event: off by default for privacy")
    parser.add_argument("--privacy", choices=PRIVACY_MODES, default=defaults.privacy,
                        help="faces in recordings and the live view: blurred (default), pixelated, or shown as is")
    parser.add_argument("--record", type=Path, default=None, help="record the annotated video into this folder")
    parser.add_argument("--segment-seconds", type=float, default=defaults.segment_s, help="length of one recording")
    parser.add_argument("--keep-segments", type=int, default=defaults.keep_segments,
                        help="recordings kept per camera; older ones are deleted")
    parser.add_argument("--live-fps", type=float, default=defaults.live_fps, help="frames/s of the live view")
    parser.add_argument("--reconnect-max", type=float, default=defaults.reconnect_max_s,
                        help="longest pause between two tries to reopen a lost source (s)")
    parser.add_argument("--stream-timeout", type=float, default=defaults.stream_timeout_s,
                        help="a stream silent this long (s) counts as lost")
    parser.add_argument("--classifier-url", default=None, help="classifier base URL(s) (default: $CLASSIFIER_URL)")
    parser.add_argument("--detector", default=None, help="detector ONNX, 'stock' or 'centerface' (as infer.py)")
    parser.add_argument("--threshold", type=float, default=DEFAULT_SCORE_THRESHOLD, help="detector score threshold")
    parser.add_argument("--detect-every", type=int, default=VideoSettings.detect_every,
                        help="run the detector on every n-th frame; optical flow follows the faces in between")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    args = parser.parse_args(argv)
    for name in ("webhook_queue", "keep_segments"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("segment_seconds", "live_fps", "reconnect_max", "stream_timeout", "webhook_timeout",
                 "webhook_give_up"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be more than 0")
    return args


def options_from_args(args: argparse.Namespace) -> WatchOptions:
    camera = args.camera or camera_name_of(args.source)
    return WatchOptions(
        camera=camera, event_labels=tuple(label.strip() for label in args.event_labels.split(",") if label.strip()),
        events_path=args.events, webhook_url=args.webhook, webhook_timeout_s=args.webhook_timeout,
        webhook_queue=args.webhook_queue, webhook_give_up_s=args.webhook_give_up, thumbnails=args.thumbnails,
        privacy=args.privacy, record_dir=args.record, segment_s=args.segment_seconds,
        keep_segments=args.keep_segments, live_fps=args.live_fps,
        reconnect_max_s=max(args.reconnect_max, WatchOptions.reconnect_min_s), stream_timeout_s=args.stream_timeout)


def camera_name_of(source: str) -> str:
    kind, target = describe_source(source)
    if kind == "camera":
        return f"camera{target}"
    stem = Path(urlsplit(str(target)).path).stem if kind == "stream" else Path(str(target)).stem
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", stem or urlsplit(str(target)).hostname or "camera").strip("._-")
    return name[:64] or "camera"


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    try:
        settings = Settings.from_env()
        detector = create_detector(args.detector or settings.detector_model, settings.ort_threads,
                                   settings.ort_providers).prepare(
            score_threshold=args.threshold, **VIDEO_DETECT_OPTIONS)
        video_settings = VideoSettings(detect_every=args.detect_every)
    except (SettingsError, ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    options = options_from_args(args)
    client = ClassifierClient(args.classifier_url or settings.classifier_url, deadline=settings.classify_deadline_s)
    if not client.is_ready():
        log.warning("no classifier answers at %s yet: faces stay unclassified until it does", client.url)
    watch = Watch(MaskPipeline(detector, client), args.source, options, video_settings)
    server = None
    try:
        if args.listen is not None:
            try:
                server = make_server(watch, *args.listen)
            except OSError as error:
                print(f"error: cannot listen on {args.listen[0]}:{args.listen[1]}: {error.strerror}", file=sys.stderr)
                return 2
            threading.Thread(target=server.serve_forever, name="live-view", daemon=True).start()
            log.info("live view on http://%s:%d/ (counts: /counts, metrics: /metrics)", *server.server_address[:2])
        with StopSignals() as stop:
            try:
                watch.run(lambda: stop.received)
            except VideoSourceError as error:
                print(f"error: {error}", file=sys.stderr)
                return 2
    finally:
        watch.close()
        if server is not None:
            server.shutdown()
    status = watch.status()
    log.info("stopped%s: %d frames, %d people %s, %d event(s), %d reconnect(s)",
             f" by {stop.received}" if stop.received else " (end of the file)", status["frames"],
             status["people"]["total"], status["people"]["by_label"], status["events"]["raised"],
             status["reconnects"])
    print(json.dumps(status))
    return 128 + (stop.number or signal.SIGTERM) if stop.received else 0


if __name__ == "__main__":
    sys.exit(main())
