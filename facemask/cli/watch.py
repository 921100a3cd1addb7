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
import contextlib
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
from facemask.core.errors import FacemaskError  # noqa: E402
from facemask.core.pipeline import ClassifierClient, MaskPipeline  # noqa: E402
from facemask.core.privacy import PRIVACY_MODES, redact_url  # noqa: E402
from facemask.core.protocols import Classifier  # noqa: E402
from facemask.core.settings import Settings, SettingsError  # noqa: E402
from facemask.serving.local_server import LocalService, is_local  # noqa: E402
from facemask.video.loop import VIDEO_DETECT_OPTIONS  # noqa: E402
from facemask.video.source import VideoSourceError, describe_source  # noqa: E402
from facemask.video.stop import StopSignals  # noqa: E402
from facemask.video.tracks import VideoSettings  # noqa: E402
from facemask.watch.config import ConfigError, camera_arguments  # noqa: E402
from facemask.watch.config import __doc__ as config_doc  # noqa: E402
from facemask.watch.mqtt import mqtt_url  # noqa: E402
from facemask.watch.options import DEFAULT_EVENT_LABELS, WatchOptions  # noqa: E402
from facemask.watch.server import make_server  # noqa: E402
from facemask.watch.startup import output_problem  # noqa: E402
from facemask.watch.watcher import Watch  # noqa: E402
from facemask.watch.zone import parse_zone  # noqa: E402

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
    parser.add_argument("--mqtt", default=None,
                        help="publish events and counts to this MQTT broker (mqtt://[user:password@]host[:port]), "
                             "with Home Assistant discovery (topics in docs/watch.md)")
    parser.add_argument("--zone", type=parse_zone, default=None,
                        help="only people whose face is inside this polygon count and raise events: 'x,y x,y x,y "
                             "...' in pixels (drawn in the live view and the recordings)")
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
    parser.add_argument("--snapshots", type=Path, default=None,
                        help="a JPEG per event (blurred as the recordings are), served at /events/<id>/snapshot.jpg "
                             "(default: <--record>/snapshots with --record, else none)")
    parser.add_argument("--segment-seconds", type=float, default=defaults.segment_s, help="length of one recording")
    parser.add_argument("--keep-segments", type=int, default=defaults.keep_segments,
                        help="recordings kept per camera; older ones are deleted")
    parser.add_argument("--keep-days", type=float, default=None,
                        help="also delete recordings older than this many days")
    parser.add_argument("--keep-gb", type=float, default=None,
                        help="also keep this camera's recordings under this many GB, deleting the oldest")
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
    parser.add_argument("--no-local-classifier", action="store_true",
                        help="exit (code 3) instead of starting a classifier when none answers at a local URL")
    parser.add_argument("--analysis-fps", type=float, default=None,
                        help="analyse at most this many frames/s of a live camera, skipping the others before "
                             "analysis (a detect rate; default: as many as the machine keeps up with, never a "
                             "backlog)")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    args = parser.parse_args(argv)
    if args.webhook is not None and (urlsplit(args.webhook).scheme not in ("http", "https")
                                     or not urlsplit(args.webhook).hostname):
        parser.error(f"--webhook must be an http:// or https:// URL, got {redact_url(args.webhook)!r}")
    for name in ("webhook_queue", "keep_segments", "live_max_connections"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.mqtt is not None:
        try:
            mqtt_url(args.mqtt)
        except ValueError as error:
            parser.error(str(error))
    for name in ("keep_days", "keep_gb", "analysis_fps"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be more than 0")
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
        snapshot_dir=args.snapshots or (args.record / "snapshots" if args.record else None),
        keep_segments=args.keep_segments, keep_days=args.keep_days, keep_gb=args.keep_gb, live_fps=args.live_fps,
        live_max_connections=args.live_max_connections,
        live_idle_timeout_s=args.live_idle_timeout, analysis_fps=args.analysis_fps, mqtt_url=args.mqtt, zone=args.zone,
        reconnect_max_s=max(args.reconnect_max, WatchOptions.reconnect_min_s), stream_timeout_s=args.stream_timeout)


def camera_name_of(source: str) -> str:
    kind, target = describe_source(source)
    if kind == "camera":
        return f"camera{target}"
    stem = Path(urlsplit(str(target)).path).stem if kind == "stream" else Path(str(target)).stem
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", stem or urlsplit(str(target)).hostname or "camera").strip("._-")
    return name[:64] or "camera"


def main(argv=None, prog: str | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(argument == "--config" or argument.startswith("--config=") for argument in argv):
        return main_cameras(argv, prog)
    args = parse_args(argv, prog)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    problem = start_problem(args)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
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
    options.auth_token = settings.watch_token
    with contextlib.ExitStack() as stack:
        answering = answering_classifier(client, args, settings, stack)
        if answering is None:
            return 3
        return watch_until_stopped(args, options, MaskPipeline(detector, answering), video_settings)


def start_problem(args: argparse.Namespace) -> str | None:
    """What makes the watch unable to start, checked before any model is loaded (one line), or None."""
    if describe_source(args.source)[0] == "file" and not Path(args.source).is_file():
        return f"input video not found: {args.source}"
    return output_problem(args.record, args.events) or (output_problem(args.snapshots, None) if args.snapshots
                                                        else None)


def answering_classifier(client: Classifier, args: argparse.Namespace, settings: Settings,
                         stack: contextlib.ExitStack) -> Classifier | None:
    """The classifier, or one started on this machine when none answers at a local URL (as `infer.py` does); None
    (the reason printed) when none answers and none may be started."""
    if not isinstance(client, ClassifierClient) or client.is_ready():
        return client
    if args.no_local_classifier or not is_local(client.url):
        print(f"error: no classifier answers at {redact_url(client.url)} (start it, use --local, or leave "
              "out --no-local-classifier with a local URL to have the watch start one)", file=sys.stderr)
        return None
    print(f"no classifier at {redact_url(client.url)}: starting one for this watch", file=sys.stderr)
    try:
        local = stack.enter_context(LocalService("classification"))
    except FacemaskError as error:
        print(f"error: {error}", file=sys.stderr)
        return None
    return ClassifierClient(local.url, deadline=settings.classify_deadline_s)


def serve(watch: Watch, listen: tuple[str, int]):
    """The watch's live view, counts, metrics and event API on a thread of its own; OSError if it cannot listen."""
    server = make_server(watch, *listen)
    if listen[0] not in ("127.0.0.1", "localhost", "::1") and not watch.options.auth_token:
        log.warning("the live view, counts and event API listen on %s with no login: set FACEMASK_WATCH_TOKEN "
                    "or keep the port on a private network", listen[0])
    threading.Thread(target=server.serve_forever, name=f"live-view-{watch.options.camera}", daemon=True).start()
    log.info("camera %s: live view on http://%s:%d/ (counts: /counts, metrics: /metrics)", watch.options.camera,
             *server.server_address[:2])
    return server


def watch_until_stopped(args: argparse.Namespace, options: WatchOptions, pipeline: MaskPipeline,
                        video_settings: VideoSettings) -> int:
    watch = Watch(pipeline, args.source, options, video_settings)
    server = None
    try:
        if args.listen is not None:
            try:
                server = serve(watch, args.listen)
            except OSError as error:
                print(f"error: cannot listen on {args.listen[0]}:{args.listen[1]}: {error.strerror}", file=sys.stderr)
                return 2
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


def main_cameras(argv: list[str], prog: str | None) -> int:
    """Several cameras from one YAML file (facemask/watch/config.py), one process: one detector session and one
    classifier for all, each camera's loop on a thread of its own with its own live view."""
    parser = argparse.ArgumentParser(prog=prog or "python -m facemask.watch", description=config_doc)
    parser.add_argument("--config", type=Path, required=True, help="the cameras (YAML)")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    top = parser.parse_args(argv)
    logging.basicConfig(level=top.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    try:
        cameras = {name: parse_args(arguments, prog) for name, arguments in camera_arguments(top.config).items()}
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for name, args in cameras.items():
        problem = start_problem(args)
        if problem is not None:
            print(f"error: camera {name}: {problem}", file=sys.stderr)
            return 2
    first = next(iter(cameras.values()))  # the detector and the classifier are shared: the top level's
    try:
        settings = Settings.from_env()
        detector = create_detector(first.detector or settings.detector_model, settings.ort_threads,
                                   settings.ort_providers).prepare(score_threshold=first.threshold,
                                                                   **VIDEO_DETECT_OPTIONS)
        client = create_classifier(first, settings)
    except (SettingsError, ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    with contextlib.ExitStack() as stack:
        answering = answering_classifier(client, first, settings, stack)
        if answering is None:
            return 3
        watches, servers = [], []
        for args in cameras.values():
            options = options_from_args(args)
            options.auth_token = settings.watch_token
            watches.append(Watch(MaskPipeline(detector, answering), args.source, options,
                                 VideoSettings(detect_every=args.detect_every)))
        failed: list[str] = []
        try:
            for watch, args in zip(watches, cameras.values()):
                if args.listen is not None:
                    try:
                        servers.append(serve(watch, args.listen))
                    except OSError as error:
                        print(f"error: cannot listen on {args.listen[0]}:{args.listen[1]}: {error.strerror}",
                              file=sys.stderr)
                        return 2
            with StopSignals() as stop:
                def run(watch: Watch) -> None:
                    try:
                        watch.run(lambda: stop.received)
                    except VideoSourceError as error:
                        failed.append(f"camera {watch.options.camera}: {error}")
                threads = [threading.Thread(target=run, args=(watch,), name=f"watch-{watch.options.camera}")
                           for watch in watches]
                for thread in threads:
                    thread.start()
                while any(thread.is_alive() for thread in threads):
                    for thread in threads:
                        thread.join(timeout=0.2)
        finally:
            for watch in watches:
                watch.close()
            for server in servers:
                server.shutdown()
                server.server_close()
    for line in failed:
        print(f"error: {line}", file=sys.stderr)
    print(json.dumps({"cameras": [watch.status() for watch in watches]}))
    if stop.received:
        return 128 + (stop.number or signal.SIGTERM)
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
