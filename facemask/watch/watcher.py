"""One camera watched: read, annotate, count, raise events, publish pictures."""
from __future__ import annotations

import logging
import time
import uuid
from collections import Counter as Tally
from datetime import datetime
from typing import Callable, Iterator

from facemask.core.pipeline import MaskPipeline
from facemask.core.privacy import redact_url
from facemask.core.results import UNCLASSIFIED, FaceResult
from facemask.video.loop import VideoAnnotator
from facemask.video.output import FinishedFrame
from facemask.video.source import ReadAhead, VideoSource, VideoSourceError, describe_source
from facemask.video.tracks import VideoSettings
from facemask.watch.clips import EventClips
from facemask.watch.delivery import DeliveryJournal
from facemask.watch.event_book import EventBook
from facemask.watch.events import EventLog, thumbnail
from facemask.watch.lineage import TrackLineage
from facemask.watch.live_view import LiveView
from facemask.watch.metrics import WatchMetrics
from facemask.watch.mqtt import MqttPublisher
from facemask.watch.options import WatchOptions, utc_now
from facemask.watch.publisher import Publisher
from facemask.watch.realtime import CapturedFrame, LatestFrames
from facemask.watch.recorder import SegmentRecorder
from facemask.watch.webhook import WebhookSender
from facemask.watch.zone import Zone

log = logging.getLogger("facemask.watch")


class Watch:
    """One camera: reads, annotates, counts, raises events and publishes pictures until should_stop() says why."""

    def __init__(self, pipeline: MaskPipeline, source: str, options: WatchOptions,
                 video_settings: VideoSettings | None = None):
        self.pipeline, self.source, self.options = pipeline, source, options
        self.video_settings = video_settings or VideoSettings()
        self.metrics = WatchMetrics(options.camera)
        self.live = LiveView(options.live_fps)
        self.events_log = EventLog(options.events_path) if options.events_path else None
        # With an events file, the webhook's queue survives a restart: the file holds every event, and a journal
        # beside it what became of each one
        journal = DeliveryJournal(options.events_path) if options.events_path and options.webhook_url else None
        self.webhook = WebhookSender(options.webhook_url, options, self.metrics, journal) \
            if options.webhook_url else None
        self.publisher: Publisher | None = None
        self.zone = Zone(options.zone) if options.zone else None
        self.mqtt = MqttPublisher(options.mqtt_url, options.camera) if options.mqtt_url else None
        self.annotator: VideoAnnotator | None = None
        self.connected, self.reconnects, self.frames, self.fps = False, 0, 0, 0.0
        self.people: Tally = Tally()
        self.in_view: dict[str, int] = {}
        self.track_ids_in_view: list[int] = []
        self.counted: set[int] = set()
        self.evented: set[int] = set()
        self.lineage: TrackLineage | None = None  # made with the annotator: it counts in analysed frames
        self.event_book = EventBook(options.snapshot_dir, options.camera, end_after_frames=50, on_end=self._ended)
        self.events_raised = 0
        self.started = utc_now()
        self._rate_started, self._rate_frames = time.monotonic(), 0
        self.camera_frames, self.skipped_frames = 0, 0  # read from the camera; skipped before analysis
        self.camera_fps = self.skipped_fps = 0.0
        self._rate_camera, self._rate_skipped = 0, 0
        self._reader_read = self._reader_skipped = 0  # of the current reader, counted so far
        # Wall-clock read time of the frames in analysis by frame index, and whether frames were skipped before it
        # because the analysis fell behind (the privacy cover then blurs more).
        self._captured_at: dict[int, tuple[float, bool]] = {}
        self._late_seen = 0

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
        lost_at, pause, stalls = None, self.options.reconnect_min_s, 0
        ending = "stopped"  # why the events still open end with the run
        quiet_since = time.monotonic()  # the last frame, or the start: how long the source gave nothing to watch
        try:
            while True:
                source = self._open(should_stop)
                if source is None:
                    return should_stop()
                stopped, delivered = self._watch(source, should_stop, lost_at)
                if stopped or source.kind == "file":
                    ending = "stopped" if stopped else "end of video"
                    return stopped
                if delivered:
                    lost_at, pause, stalls = time.monotonic(), self.options.reconnect_min_s, 0
                    quiet_since = lost_at
                    self._set_connected(False)
                    log.warning("source lost after %d frame(s) (%s); reconnecting with backoff", delivered,
                                source.end_reason)
                    continue
                # It opens but gives no frame: a camera still booting, or one sending what does not decode (issue
                # 35: 25 random "JPEG"s a second, and 14 minutes without a line). Past the stream time-out it is a
                # stalled source, said as such; either way the next try waits, with backoff.
                quiet_s = time.monotonic() - quiet_since
                if quiet_s >= self.options.stream_timeout_s:
                    stalls += 1
                    if stalls == 1 or stalls % 10 == 0:
                        log.warning("stalled source: no decodable frame for %.0f s from %s; reconnecting with "
                                    "backoff (try %d, next in %.1f s)", quiet_s, redact_url(self.source), stalls,
                                    pause)
                self._pause(pause, should_stop)
                pause = min(pause * 2, self.options.reconnect_max_s)
        finally:
            if self.annotator is not None:
                self._finished(self.annotator.flush())
            self.event_book.end_all(ending)

    def _watch(self, source: VideoSource, should_stop: Callable[[], str | None],
               lost_at: float | None) -> tuple[str | None, int]:
        if self.annotator is None:
            log.info("watching %s (%s, %.0f frames/s) as camera %r", redact_url(self.source), source.kind,
                     source.fps, self.options.camera)
            # Tracks count time in analysed frames: a live source is analysed at most analysis_fps a second.
            fps = source.fps if source.kind == "file" or not self.options.analysis_fps \
                else min(source.fps, self.options.analysis_fps)
            self.annotator = VideoAnnotator(self.pipeline, fps, self.video_settings)
            self.lineage = TrackLineage(memory_frames=1.5 * fps)
            self.event_book.end_after_frames = 2.0 * fps  # an event ends 2 s after its person was last in view
            recorder = None
            if self.options.record_dir is not None:
                recorder = SegmentRecorder(self.options.record_dir, self.options.camera, self.options.segment_s,
                                           self.options.keep_segments, on_error=self.metrics.recording_error,
                                           keep_days=self.options.keep_days,
                                           keep_bytes=self.options.keep_gb * 1e9 if self.options.keep_gb else None)
                self.metrics.recording(True)
            clips = None
            if recorder is not None and self.options.snapshot_dir is not None:
                clips = EventClips(recorder.segments, self.options.snapshot_dir, self.options.camera,
                                   self.event_book.clip, self.options.clip_pre_s, self.options.clip_post_s,
                                   self.options.clip_max_s)
            self.publisher = Publisher(self.options.privacy, recorder, self.live, self.event_book, self.zone, clips)
        reader: ReadAhead | LatestFrames
        if source.kind == "file":  # a file is analysed whole, its frames timed by its frame rate
            reader = ReadAhead(source.frames(), self.annotator.timing)
            started, fps = time.time(), source.fps
            frames: Iterator[CapturedFrame] = (CapturedFrame(image, started + number / fps)
                                               for number, image in enumerate(reader))
        else:
            reader = LatestFrames(source.frames(), self.options.analysis_fps)
            self._reader_read = self._reader_skipped = self._late_seen = 0
            frames = iter(reader)
        delivered, stopped = 0, None
        try:
            for captured in frames:
                if not delivered:
                    self._set_connected(True)
                    if lost_at is not None:
                        self.annotator.gap()
                        self.reconnects += 1
                        self.metrics.reconnected()
                        log.info("source back after %.1f s: watching again; track ids and counts carry on",
                                 time.monotonic() - lost_at)
                delivered += 1
                if isinstance(reader, LatestFrames):
                    self._count_camera_frames(reader)
                late = isinstance(reader, LatestFrames) and reader.late > self._late_seen
                if isinstance(reader, LatestFrames):
                    self._late_seen = reader.late
                self._captured_at[self.annotator.index] = (captured.captured_at, late)
                self._finished(self.annotator.push(captured.image))
                stopped = should_stop()
                if stopped:
                    break
        finally:
            reader.stop()
            if isinstance(reader, LatestFrames):
                self._count_camera_frames(reader)
            source.close()
        return stopped, delivered

    def _count_camera_frames(self, reader: LatestFrames) -> None:
        read, skipped = reader.read - self._reader_read, reader.skipped - self._reader_skipped
        self._reader_read, self._reader_skipped = reader.read, reader.skipped
        if read or skipped:
            self.camera_frames += read
            self.skipped_frames += skipped
            self.metrics.camera_frames(read, skipped)

    def _set_connected(self, value: bool) -> None:
        self.connected = value
        self.metrics.connected(value)
        # frames/s restarts its count with the source: no stale rate while it is away, no outage averaged in
        self._rate_started, self._rate_frames = time.monotonic(), self.frames
        self._rate_camera, self._rate_skipped = self.camera_frames, self.skipped_frames
        if not value:
            self.fps = self.camera_fps = self.skipped_fps = 0.0
            self.metrics.frames_per_second(0.0, 0.0, 0.0)

    # ------------------------------------------------------------------------------------------- people, events
    def _finished(self, frames: list[FinishedFrame]) -> None:
        for frame in frames:
            self.frames += 1
            frame.record["captured_at"], frame.record["late"] = self._captured_at.pop(frame.record["frame"],
                                                                                      (time.time(), False))
            if self.lineage is not None:
                self.lineage.observe(frame.record["frame"], [
                    (face.track_id, face.box, face.source == "detected") for face in frame.record["faces"]
                    if face.track_id is not None])
            self.event_book.seen(frame.record["frame"], frame.record["captured_at"],
                                 {face.track_id for face in frame.record["faces"] if face.track_id is not None},
                                 self._tracks_of_person)
            self.metrics.frame()
            counted = [face for face in frame.shown if self.zone is None or self.zone.holds(face.box)]
            self.in_view = dict(Tally(face.label for face in counted))
            # People, not tracks: a face that got a second track keeps its person's (oldest) id here.
            self.track_ids_in_view = sorted({self._person_id(face.track_id) for face in counted
                                             if face.track_id is not None})
            self.metrics.in_view(self.in_view)
            for face in frame.shown:
                self._person(face, frame)
            if self.publisher is not None:
                self.publisher.put(frame)
            if self.frames % 250 == 0:
                self._retire_tracks()
        if self.mqtt is not None and frames:
            self.mqtt.counts(dict(self.people), self.in_view)
        now = time.monotonic()
        if now - self._rate_started >= 2.0:
            elapsed = now - self._rate_started
            self.fps = (self.frames - self._rate_frames) / elapsed
            self.camera_fps = (self.camera_frames - self._rate_camera) / elapsed
            self.skipped_fps = (self.skipped_frames - self._rate_skipped) / elapsed
            self.metrics.frames_per_second(self.fps, self.camera_fps, self.skipped_fps)
            self._rate_started, self._rate_frames = now, self.frames
            self._rate_camera, self._rate_skipped = self.camera_frames, self.skipped_frames

    def _person(self, face: FaceResult, frame: FinishedFrame) -> None:
        if self.annotator is None or face.track_id is None or (self.zone is not None
                                                                and not self.zone.holds(face.box)):
            return
        book = self.annotator.book
        track = book.tracks.get(face.track_id)
        if track is None or face.label == UNCLASSIFIED or not book.counts_as_person(track):
            return
        person = self.lineage.person(track.track_id) if self.lineage else {track.track_id}  # all its tracks
        if track.track_id not in self.counted:
            if not person & self.counted:
                self.people[face.label] += 1
                self.metrics.person(face.label)
                log.debug("person counted: track #%d, %s", track.track_id, face.label)
            else:
                log.debug("track #%d continues a counted person: not counted again", track.track_id)
            self.counted.add(track.track_id)
        if track.track_id not in self.evented and face.label in self.options.event_labels:
            if not person & self.evented:
                self._raise(face, frame, person)
            self.evented.add(track.track_id)

    def _raise(self, face: FaceResult, frame: FinishedFrame, person: set[int]) -> None:
        event = {"id": uuid.uuid4().hex, "type": "start", "time": utc_now(), "camera": self.options.camera,
                 "track_id": self._person_id(face.track_id or 0), "label": face.label, "probability": face.score,
                 "probabilities": face.probabilities, "frame": frame.record["frame"]}
        if self.options.thumbnails:
            event["thumbnail_jpeg_base64"] = thumbnail(frame.image, face.box)
        self.events_raised += 1
        self.metrics.event("raised")
        log.info("event %s: track #%d %s (%.2f)", event["id"], face.track_id, face.label, face.score or 0.0)
        self._send(event)
        self.event_book.started(event, person, frame.record["frame"], frame.record["captured_at"])
        frame.record.setdefault("snapshots", []).append(event["id"])  # the publisher saves it, blurred

    def _ended(self, end: dict) -> None:
        self._send(end)
        if self.publisher is not None and self.publisher.clips is not None:
            self.publisher.clips.request(end["id"], datetime.fromisoformat(end["start"]).timestamp(),
                                         datetime.fromisoformat(end["end"]).timestamp())

    def _send(self, record: dict) -> None:
        """An event's start or end record to the events file, the webhook and MQTT."""
        if record["type"] == "end":
            log.info("event %s ended: %s after %.1f s", record["id"], record["reason"], record["duration_s"])
        if self.events_log is not None:
            try:
                self.events_log.write(record)
            except OSError as error:  # a full disk: the webhook still gets the record
                log.error("cannot write event %s (%s) to the events file: %s", record["id"], record["type"], error)
        if self.webhook is not None:
            self.webhook.submit(record)
        if self.mqtt is not None:
            self.mqtt.event(record)

    def _tracks_of_person(self, track_id: int) -> set[int]:
        return self.lineage.person(track_id) if self.lineage else {track_id}

    def _person_id(self, track_id: int) -> int:
        return self.lineage.person_id(track_id) if self.lineage else track_id

    def _retire_tracks(self) -> None:
        """Forget people long gone, so memory stays flat all day. A track is kept while it could still come back
        (the tracker's patience, re-identification) plus a margin; one that qualified but never got a label is
        counted as unclassified when it goes."""
        annotator, settings = self.annotator, self.video_settings
        if annotator is None:
            return
        horizon = (max(settings.reid_s, settings.max_missing_s) + 2.0) * annotator.fps
        gone = annotator.book.retire(annotator.index, horizon)
        for track_id, track in gone.items():
            person = self.lineage.person(track_id) if self.lineage else {track_id}
            if not person & self.counted and annotator.book.counts_as_person(track):
                self.people[UNCLASSIFIED] += 1
                self.metrics.person(UNCLASSIFIED)
                self.counted.add(track_id)
        forgotten = self.lineage.retire(gone) if self.lineage else set(gone)
        self.counted -= forgotten
        self.evented -= forgotten
        if len(annotator.errors) > 100:  # classifier errors by frame: keep the latest few for the log
            annotator.errors = dict(list(annotator.errors.items())[-20:])

    # ------------------------------------------------------------------------------------------------- status
    def status(self) -> dict:
        """What /counts answers."""
        events = {"raised": self.events_raised}
        if self.webhook is not None:
            events.update(sent=self.webhook.sent, failed=self.webhook.failed, dropped=self.webhook.dropped,
                          queued=self.webhook.queue.qsize())
        return {"camera": self.options.camera, "source": redact_url(self.source), "connected": self.connected,
                "since": self.started, "frames": self.frames, "frames_per_second": round(self.fps, 2),
                "camera_frames": self.camera_frames, "camera_frames_per_second": round(self.camera_fps, 2),
                "skipped_frames": self.skipped_frames, "skipped_frames_per_second": round(self.skipped_fps, 2),
                "reconnects": self.reconnects, "in_view": self.in_view, "track_ids_in_view": self.track_ids_in_view,
                "people": {"total": sum(self.people.values()), "by_label": dict(sorted(dict(self.people).items()))},
                "events": events, "privacy": self.options.privacy,
                "privacy_frames_blurred_whole": self.publisher.cover.covered_whole if self.publisher else 0}

    def close(self) -> None:
        self.live.close()
        if self.publisher is not None:
            self.publisher.close()
        if self.webhook is not None:
            self.webhook.close()
        if self.mqtt is not None:
            self.mqtt.counts(dict(self.people), {})
            self.mqtt.close()
        if self.events_log is not None:
            self.events_log.close()
