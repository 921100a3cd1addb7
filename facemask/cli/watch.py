"""Watch a camera all day: reconnects, one event per person, a live view, Prometheus metrics, privacy.

    python -m facemask.watch --source rtsp://door-cam/stream --camera door --listen 0.0.0.0:8100 \\
        --events events.jsonl --webhook http://alerts.local/facemask --record recordings/

A thin layer over the video path of infer.py (facemask.video.loop.VideoAnnotator: detect, follow, track, classify;
facemask.video.source.ReadAhead: decoding ahead):
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
import json
import logging
import os
import re
import signal
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

# OpenCV and FFmpeg would log their own lines at every drop; the watch says what happened in one line of its own.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")


from facemask.cli.options import add_common_options, create_classifier  # noqa: E402
from facemask.core.detector import create_detector  # noqa: E402
from facemask.core.pipeline import MaskPipeline  # noqa: E402
from facemask.core.privacy import PRIVACY_MODES, redact_url  # noqa: E402
from facemask.core.settings import Settings, SettingsError  # noqa: E402
from facemask.video.loop import VIDEO_DETECT_OPTIONS  # noqa: E402
from facemask.video.source import VideoSourceError, describe_source  # noqa: E402
from facemask.video.stop import StopSignals  # noqa: E402
from facemask.video.tracks import VideoSettings  # noqa: E402
from facemask.watch.options import DEFAULT_EVENT_LABELS, WatchOptions  # noqa: E402
from facemask.watch.server import make_server  # noqa: E402
from facemask.watch.watcher import Watch  # noqa: E402

log = logging.getLogger("facemask.watch")


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


def parse_args(argv=None, prog: str | None = None) -> argparse.Namespace:
    defaults = WatchOptions()
    parser = argparse.ArgumentParser(prog=prog or "python -m facemask.watch", description=__doc__,
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
                        help="seconds one webhook attempt may take in all (connect, send, the whole answer)")
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
    parser.add_argument("--live-max-connections", type=int, default=defaults.live_max_connections,
                        help="live-view connections served at once; more are answered 503 at once")
    parser.add_argument("--live-idle-timeout", type=float, default=defaults.live_idle_timeout_s,
                        help="a live-view connection that sends or takes nothing this long (s) is closed")
    parser.add_argument("--reconnect-max", type=float, default=defaults.reconnect_max_s,
                        help="longest pause between two tries to reopen a lost source (s)")
    parser.add_argument("--stream-timeout", type=float, default=defaults.stream_timeout_s,
                        help="a stream silent, or sending nothing that decodes, this long (s) counts as lost")
    add_common_options(parser)
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    args = parser.parse_args(argv)
    if args.webhook is not None and (urlsplit(args.webhook).scheme not in ("http", "https")
                                     or not urlsplit(args.webhook).hostname):
        parser.error(f"--webhook must be an http:// or https:// URL, got {redact_url(args.webhook)!r}")
    for name in ("webhook_queue", "keep_segments", "live_max_connections"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("segment_seconds", "live_fps", "reconnect_max", "stream_timeout", "webhook_timeout",
                 "webhook_give_up", "live_idle_timeout"):
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
        keep_segments=args.keep_segments, live_fps=args.live_fps, live_max_connections=args.live_max_connections,
        live_idle_timeout_s=args.live_idle_timeout,
        reconnect_max_s=max(args.reconnect_max, WatchOptions.reconnect_min_s), stream_timeout_s=args.stream_timeout)


def camera_name_of(source: str) -> str:
    kind, target = describe_source(source)
    if kind == "camera":
        return f"camera{target}"
    stem = Path(urlsplit(str(target)).path).stem if kind == "stream" else Path(str(target)).stem
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", stem or urlsplit(str(target)).hostname or "camera").strip("._-")
    return name[:64] or "camera"


def main(argv=None, prog: str | None = None) -> int:
    args = parse_args(argv, prog)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    try:
        settings = Settings.from_env()
        detector = create_detector(args.detector or settings.detector_model, settings.ort_threads,
                                   settings.ort_providers).prepare(score_threshold=args.threshold,
                                                                   **VIDEO_DETECT_OPTIONS)
        video_settings = VideoSettings(detect_every=args.detect_every)
        client = create_classifier(args, settings)
    except (SettingsError, ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    options = options_from_args(args)
    if not client.is_ready():
        log.warning("no classifier answers at %s yet: faces stay unclassified until it does",
                    redact_url(client.url))
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
            server.server_close()
    status = watch.status()
    log.info("stopped%s: %d frames, %d people %s, %d event(s), %d reconnect(s)",
             f" by {stop.received}" if stop.received else " (end of the file)", status["frames"],
             status["people"]["total"], status["people"]["by_label"], status["events"]["raised"],
             status["reconnects"])
    print(json.dumps(status))
    return 128 + (stop.number or signal.SIGTERM) if stop.received else 0


if __name__ == "__main__":
    sys.exit(main())
