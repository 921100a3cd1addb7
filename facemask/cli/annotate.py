"""Annotate images or a video with mask / no-mask boxes.

    python infer.py --is_image --in_path sample-images --out_path output      # image or folder of images
    python infer.py --in_path clip.mp4 --out_path output/clip_annotated.mp4   # video
    python infer.py --in_path 0 --out_path output/                            # camera 0 (or rtsp://, http://)

Installed (`pip install .`), the same command is `facemask annotate ...` (or `facemask --is_image ...`).

Faces are found here with RetinaFace and classified by the classification service over HTTP (CLASSIFIER_URL,
default http://localhost:3000). When that URL is local and nothing answers, a classifier is started for the run;
--local classifies in this process instead, with no service at all.
Every output gets a JSON sidecar with, per face: box, 5 landmarks, detector score, label and class probabilities;
a video's faces also carry a track_id, and its JSON ends with a summary of the people seen.

Exit codes: 0 done; 1 some inputs unreadable or some faces unclassified; 2 bad arguments or paths; 3 no classifier;
130 / 143 a video run stopped by SIGINT (Ctrl-C) / SIGTERM, after finishing the video file and its JSON.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from pathlib import Path

# OpenCV and FFmpeg would print their own lines for a corrupt video; the CLI reports one clear line instead.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")

from facemask.cli.main import run  # noqa: E402
from facemask.cli.options import add_common_options, create_classifier  # noqa: E402
from facemask.cli.runner import (  # noqa: E402
    InputError,
    annotate_images,
    annotate_video,
    plan_image_outputs,
    plan_video_output,
)
from facemask.core.detector import (  # noqa: E402
    DEFAULT_LONG_SIDE,
    TILE_ABOVE,
    create_detector,
    parse_long_side,
)
from facemask.core.errors import LOGGER, FacemaskError, configure_logging  # noqa: E402
from facemask.core.pipeline import ClassifierClient, MaskPipeline  # noqa: E402
from facemask.core.privacy import redact_url  # noqa: E402
from facemask.core.sessions import session_providers  # noqa: E402
from facemask.core.settings import Settings, SettingsError  # noqa: E402
from facemask.serving.local_server import LocalService, is_local  # noqa: E402
from facemask.video.loop import VIDEO_DETECT_OPTIONS, VIDEO_LONG_SIDE  # noqa: E402
from facemask.video.stop import StopSignals  # noqa: E402
from facemask.video.tracks import VideoSettings  # noqa: E402


def truthy(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "y"):
        return True
    if value.lower() in ("0", "false", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {value!r}")


def parse_args(argv=None, prog: str | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--is_image", nargs="?", const=True, default=False, type=truthy,
                        help="input is an image or a folder of images (also accepts --is_image True/False)")
    parser.add_argument("--in_path", required=True,
                        help="image, folder, video file, camera index (0, 1, ...) or stream URL (rtsp://, http://)")
    parser.add_argument("--out_path", type=Path, required=True,
                        help="output file, or folder (created if its parent exists)")
    parser.add_argument("--allow-nested-output", action="store_true",
                        help="images: allow --out_path inside the input folder (its files are then not read as inputs)")
    parser.add_argument("--no-local-classifier", action="store_true",
                        help="fail instead of starting a classifier service when none answers at a local URL")
    parser.add_argument("--long-side", type=parse_long_side, default=argparse.SUPPRESS,
                        help=f"detector input size: 'auto' (images' default: a coarse and a fine pass, right for "
                             f"close-ups and crowds alike, and above {TILE_ABOVE} px a pass at full resolution in "
                             f"tiles), or one pass with the image's long side scaled to N px (0 = native); video "
                             f"frames default to one pass at their own size up to {VIDEO_LONG_SIDE} px, and 'auto' "
                             f"tiles 1920x1080 frames for distant cameras (several times slower: "
                             f"bench/results/large_photos.md)")
    add_common_options(parser)
    video = parser.add_argument_group("video")
    video.add_argument("--reclassify-every", type=int, default=VideoSettings.reclassify_every,
                       help="frames between two classifications of the same person")
    video.add_argument("--min-track-detections", type=int, default=VideoSettings.min_track_detections,
                       help="a track found by the detector fewer times is not counted as a person")
    video.add_argument("--min-track-seconds", type=float, default=VideoSettings.min_track_s,
                       help="a track in view for less time is not counted as a person")
    return parser.parse_args(argv)


def main(argv=None, prog: str | None = None) -> int:
    args = parse_args(argv, prog)
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level or "ERROR")  # the CLI prints its own summary and error lines
    args.classifier_url = args.classifier_url or settings.classifier_url
    try:
        if args.is_image:
            pairs = plan_image_outputs(Path(args.in_path), args.out_path, allow_nested=args.allow_nested_output)
        else:
            video_out = plan_video_output(args.in_path, args.out_path)
            video_settings = VideoSettings(detect_every=args.detect_every, reclassify_every=args.reclassify_every,
                                           min_track_detections=args.min_track_detections,
                                           min_track_s=args.min_track_seconds)
        if hasattr(args, "long_side"):
            scale = {"long_side": args.long_side}
        elif args.is_image:
            scale = {"long_side": DEFAULT_LONG_SIDE}
        else:  # measured on video frames: one pass at the frame's size (bench/video_tracking.py)
            scale = VIDEO_DETECT_OPTIONS
        detector = create_detector(args.detector or settings.detector_model, settings.ort_threads,
                                   settings.ort_providers).prepare(score_threshold=args.threshold, **scale)
        client = create_classifier(args, settings)
    except FacemaskError as error:  # bad paths or options, or a model that cannot be used
        print(f"error: {error}", file=sys.stderr)
        return 2
    LOGGER.info("CLI: detector %s on %s, classifier %s, %s", detector.model_source,
                ", ".join(session_providers(detector.session)), redact_url(client.url),
                "images" if args.is_image else f"video {redact_url(args.in_path)}")

    stop = StopSignals()
    with contextlib.ExitStack() as stack:
        if not client.is_ready():
            if args.no_local_classifier or not is_local(args.classifier_url):
                print(f"error: no classifier answers at {redact_url(args.classifier_url)} (start it: docker compose "
                      "up, or gunicorn -c classification/gunicorn.conf.py 'classification.app:create_app()')",
                      file=sys.stderr)
                return 3
            print(f"no classifier at {redact_url(args.classifier_url)}: starting one for this run", file=sys.stderr)
            try:
                local = stack.enter_context(LocalService("classification"))
            except FacemaskError as error:
                print(f"error: {error}", file=sys.stderr)
                return 3
            client = ClassifierClient(local.url, deadline=settings.classify_deadline_s)
        pipeline = MaskPipeline(detector, client)
        try:
            if args.is_image:
                summary = annotate_images(pipeline, pairs)
            else:
                summary = annotate_video(pipeline, args.in_path, video_out, video_settings, stop)
        except InputError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        except OSError as error:  # an output that cannot be written: one line, as the README promises
            print(f"error: cannot write {error.filename or args.out_path}: {error.strerror or error}", file=sys.stderr)
            return 2

    if summary.people is not None:  # a video: people (tracks), not faces per frame
        by_label = ", ".join(f"{label} {count}" for label, count in summary.people["by_label"].items())
        print(f"people seen: {summary.people['total']}" + (f" ({by_label})" if by_label else "")
              + (f"; {summary.unreadable_frames} unreadable frame(s) skipped" if summary.unreadable_frames else ""),
              file=sys.stderr)
    else:
        print(summary.faces_line(), file=sys.stderr)
    print(json.dumps(summary.to_dict()))
    for warning in summary.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for path, reason in summary.failed.items():
        print(f"error: {path}: {reason}", file=sys.stderr)
    if summary.classifier_errors:
        first = next(iter(summary.classifier_errors.values()))
        print(f"error: {len(summary.classifier_errors)} input(s) have unclassified faces: {first}", file=sys.stderr)
    if summary.write_error:
        print(f"error: {summary.write_error}; stopped with {len(summary.not_processed)} input(s) not processed",
              file=sys.stderr)
        return 2
    if summary.interrupted and summary.people is None:  # an image batch stopped by Ctrl-C
        print(f"interrupted: {len(summary.not_processed)} input(s) not processed", file=sys.stderr)
        return 130
    if summary.interrupted:
        print(f"stopped by {summary.interrupted}: video and JSON written for the frames done", file=sys.stderr)
        return 128 + (stop.number or signal.SIGTERM)  # the number is set with the name
    return 1 if (summary.failed or summary.classifier_errors) else 0


if __name__ == "__main__":
    run(main)
