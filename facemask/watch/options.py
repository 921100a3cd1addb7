"""What one watch is told to do, and the small helpers its parts share."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from facemask.core.classes import INCORRECT, WITHOUT_MASK

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
    keep_days: float | None = None  # recordings older than this are deleted
    keep_gb: float | None = None  # this camera's recordings take at most this much disk; the oldest go first
    live_fps: float = 10.0
    zone: list[tuple[float, float]] | None = None  # polygon (pixels): only people inside it count
    mqtt_url: str | None = None  # mqtt://[user:password@]host[:port]: events, counts, Home Assistant discovery
    auth_token: str | None = None  # asked of every client but /health and /ready (FACEMASK_WATCH_TOKEN)
    snapshot_dir: Path | None = None  # a JPEG per event, blurred as the recordings are (and its clip, with recordings)
    clip_pre_s: float = 3.0  # an event's clip starts this long before the event (on the keyframe before)
    clip_post_s: float = 3.0  # and ends this long after it
    clip_max_s: float = 60.0  # at most this long (a longer event's clip is its first minute)
    analysis_fps: float | None = None  # a live source's frames analysed per second at most (None: all it can)
    live_max_connections: int = 32  # live-view connections served at once (page, stream, /counts...); 503 above
    live_idle_timeout_s: float = 10.0  # a live-view connection that sends (or takes) nothing this long is closed
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 4.0  # with the stream back, the watch resumes within this long (+ the open itself)
    stream_timeout_s: float = 10.0  # a stream silent, or with no decodable frame, this long counts as dropped


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
