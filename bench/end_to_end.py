"""The whole pipeline (detector, aligned crops, the real classifier service) scored on the annotated scenes.

    python -m bench.end_to_end                          # all scenes, detector at the service defaults
    python -m bench.end_to_end --limit 150 --threshold 0.3 --long-side 640

Per class AP (VOC all-point), where a detection's class is the predicted label and its score det_score x class
probability, and their mean (mAP); face-level accuracy = correctly labelled ground-truth faces / all ground-truth
faces of the class, missed faces counting as errors, and among the faces found (the classifier's share). Both at
IoU 0.5 and 0.3. The same detections are scored once more with every matched face given its true label: what a
perfect classifier would reach behind this detector, which separates the detector's part of the gap from the
classifier's.
A three-class classifier (with `incorrect`) is scored on all three classes (the scenes' mask_weared_incorrect is
`incorrect`), with the two-class mAP beside it for comparison. For a two-class classifier mask_weared_incorrect faces
appear in the confusion table only: for the AP of the two main classes a detection on one of them is neither a hit
nor a false alarm (VOC "difficult" handling).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from bench.common import Report, add_scene_arguments, command_line, run_name, scenes_from_args
from facemask.core.boxes import expand_boxes, iou_matrix
from facemask.core.classes import INCORRECT, WITH_MASK, WITHOUT_MASK, canonical_label
from facemask.core.detector import (
    DEFAULT_LONG_SIDE,
    DEFAULT_SCORE_THRESHOLD,
    PyramidFaceDetector,
    create_detector,
    parse_long_side,
)
from facemask.core.images import decode_image
from facemask.core.pipeline import ClassifierClient, MaskPipeline
from facemask.core.results import CLASSIFIED, FaceResult, Faces
from facemask.core.settings import Settings
from facemask.serving.local_server import LocalService
from training.annotations import IOU_THRESHOLDS, average_precision, greedy_match

MAIN_CLASSES = (WITH_MASK, WITHOUT_MASK)
MISSED = "missed"


def _boxes_and_scores(faces: Sequence[FaceResult], expansion: float, label: str | None = None):
    boxes = expand_boxes([face.box for face in faces], expansion)
    scores = np.array([face.det_score * _probability(face, label) for face in faces])
    return boxes, scores


def _probability(face: FaceResult, label: str | None) -> float:
    """The face's probability of `label` (1.0 for no label: detection alone is scored)."""
    if label is None:
        return 1.0
    if face.probabilities is None:
        raise ValueError(f"an unclassified face has no probability of {label}")
    return face.probabilities[label]


def scored_classes(classes: list[str]) -> tuple[str, ...]:
    """The classes the AP and accuracy are over: the two main ones, and `incorrect` where the classifier knows it."""
    return (*MAIN_CLASSES, INCORRECT) if INCORRECT in classes else MAIN_CLASSES


def with_product_labels(annotations: list) -> list:
    """Scene annotations with the product's class names (mask_weared_incorrect -> incorrect)."""
    return [dataclasses.replace(a, labels=[canonical_label(label) for label in a.labels]) for a in annotations]


def class_average_precision(predictions: Sequence[Sequence[FaceResult]], annotations: list, label: str, iou: float,
                            expansion: float = 1.0, scored: tuple[str, ...] = MAIN_CLASSES,
                            every_class: bool = False) -> float:
    """AP of one class; detections that only overlap ground truth outside the scored classes are left out.

    every_class: rank every classified detection by det_score x its probability of `label`, whatever its top label
    (how YOLOv5's val.py scores a detector, multi-label); default: only the detections labelled `label`, as the
    product reports them."""
    scores, hits, num_ground_truth = [], [], 0
    for faces, annotation in zip(predictions, annotations):
        labels = np.array(annotation.labels, dtype=object)
        ground_truth = annotation.boxes[labels == label]
        ignored = annotation.boxes[~np.isin(labels, [*scored, label])]
        num_ground_truth += len(ground_truth)
        if every_class:
            candidates = [f for f in faces if f.probabilities and label in f.probabilities]
        else:
            candidates = [f for f in faces if f.label == label]
        boxes, det_scores = _boxes_and_scores(candidates, expansion, label)
        matched = greedy_match(boxes, det_scores, ground_truth, iou) >= 0
        on_ignored = ~matched & (iou_matrix(boxes, ignored).max(axis=1, initial=0.0) >= iou)
        scores.extend(det_scores[~on_ignored])
        hits.extend(matched[~on_ignored])
    return average_precision(scores, hits, num_ground_truth)


def match_faces(faces: Sequence[FaceResult], annotation, iou: float, expansion: float = 1.0) -> np.ndarray:
    """Per detection, the index of the ground-truth face it matches (best detector score first), or -1."""
    boxes, det_scores = _boxes_and_scores(faces, expansion)
    return greedy_match(boxes, det_scores, annotation.boxes, iou)


def face_confusion(predictions: Sequence[Sequence[FaceResult]], annotations: list, iou: float, expansion: float = 1.0):
    """{ground-truth label: Counter(predicted label or MISSED)} and Counter of labels of unmatched detections."""
    confusion: dict[str, Counter] = {}
    unmatched: Counter[str] = Counter()
    for faces, annotation in zip(predictions, annotations):
        matches = match_faces(faces, annotation, iou, expansion)
        predicted = {int(gt): faces[i].label for i, gt in enumerate(matches) if gt >= 0}
        for index, label in enumerate(annotation.labels):
            confusion.setdefault(label, Counter())[predicted.get(index, MISSED)] += 1
        unmatched.update(face.label for face, gt in zip(faces, matches) if gt < 0)
    return confusion, unmatched


def with_true_labels(predictions: Sequence[Sequence[FaceResult]], annotations: list, classes: list[str],
                     iou: float, expansion: float = 1.0) -> Sequence[Sequence[FaceResult]]:
    """The detections with a perfect classifier: each face matched to a ground-truth face of a known class gets that
    label with probability 1; unmatched detections (false alarms, unannotated faces) keep the classifier's label,
    also with probability 1, so they still rank with the hits by detector score alone."""
    if INCORRECT in classes:
        annotations = with_product_labels(annotations)
    relabelled = []
    for faces, annotation in zip(predictions, annotations):
        matches = match_faces(faces, annotation, iou, expansion)
        labels = [annotation.labels[int(gt)] if gt >= 0 else face.label for face, gt in zip(faces, matches)]
        relabelled.append([
            dataclasses.replace(face, label=label, score=1.0, status=CLASSIFIED, error=None,
                                probabilities={c: float(c == label) for c in classes}) if label in classes else face
            for face, label in zip(faces, labels)])
    return relabelled


def evaluate(predictions: Sequence[Sequence[FaceResult]], annotations: list, classes: list[str], iou: float,
             expansion: float = 1.0) -> dict:
    """AP per class the classifier knows and the scenes contain, mAP and face accuracy over the scored classes.

    "map" and "accuracy_main" are over all scored classes (three for a classifier with `incorrect`);
    "map_two_class" is over with_mask and without_mask only, comparable across two- and three-class models.
    "unmasked_called_mask": detected without_mask faces labelled with_mask, as a fraction of them.
    "incorrect_recall" / "incorrect_precision": masks worn wrong labelled so / all of them (missed ones count), and
    faces labelled so that are masks worn wrong / all detections labelled so (those matched to no annotated face too).
    "accuracy_found": correctly labelled faces of the scored classes / those of them the detector found.
    """
    scored = scored_classes(classes)
    if INCORRECT in scored:
        annotations = with_product_labels(annotations)
    present = {label for a in annotations for label in a.labels}
    ap = {label: class_average_precision(predictions, annotations, label, iou, expansion, scored)
          for label in classes if label in present}
    ap_every_class = {label: class_average_precision(predictions, annotations, label, iou, expansion, scored, True)
                      for label in classes if label in present}
    confusion, unmatched = face_confusion(predictions, annotations, iou, expansion)
    accuracy = {label: confusion[label][label] / sum(confusion[label].values()) for label in confusion}
    main = [label for label in scored if label in confusion]
    correct = sum(confusion[label][label] for label in main)
    total = sum(sum(confusion[label].values()) for label in main)
    found = total - sum(confusion[label][MISSED] for label in main)
    detected = sum(sum(c.values()) - c[MISSED] for c in confusion.values())
    unmasked = confusion.get(WITHOUT_MASK, Counter())
    called_incorrect = sum(c[INCORRECT] for c in confusion.values()) + unmatched[INCORRECT]
    return {"incorrect_recall": accuracy.get(INCORRECT),
            "incorrect_precision": confusion.get(INCORRECT, Counter())[INCORRECT] / called_incorrect
            if called_incorrect and INCORRECT in scored else None,
            "ap": ap, "map": float(np.mean([ap[label] for label in scored if label in ap])),
            "map_two_class": float(np.mean([ap[label] for label in MAIN_CLASSES if label in ap])),
            "ap_every_class": ap_every_class,
            "map_every_class": float(np.mean([ap_every_class[label] for label in scored if label in ap_every_class])),
            "scored_classes": list(scored),
            "unmasked_called_mask": unmasked[WITH_MASK] / max(1, sum(unmasked.values()) - unmasked[MISSED]),
            "accuracy": accuracy, "accuracy_main": correct / max(total, 1), "accuracy_found": correct / max(found, 1),
            "detected": detected / max(sum(sum(c.values()) for c in confusion.values()), 1),
            "confusion": {label: dict(counts) for label, counts in confusion.items()},
            "unmatched_detections": dict(unmatched)}


def _main_classes_first(item: tuple[str, dict]) -> tuple[int, str]:
    return (MAIN_CLASSES.index(item[0]) if item[0] in MAIN_CLASSES else len(MAIN_CLASSES), item[0])


def run_pipeline(pipeline: MaskPipeline, annotations: list) -> tuple[list[Faces], dict]:
    predictions: list[Faces] = []
    timings: list[dict] = []
    for annotation in tqdm(annotations, desc="pipeline", unit="img"):
        frame = pipeline.process(decode_image(annotation.image))
        if frame.error:
            raise SystemExit(f"error: {annotation.image.name}: {frame.error}")
        predictions.append(frame.faces)
        timings.append(frame.timing_ms)
    return predictions, {key: float(np.mean([t[key] for t in timings])) for key in timings[0]} if timings else {}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_scene_arguments(parser)
    parser.add_argument("--long-side", type=parse_long_side, default=DEFAULT_LONG_SIDE, help="'none' = native")
    parser.add_argument("--threshold", type=float, default=DEFAULT_SCORE_THRESHOLD, help="detector score threshold")
    parser.add_argument("--box-expansion", type=float, default=1.0,
                        help="scale detector boxes about their centre before matching (annotations box heads)")
    parser.add_argument("--model", type=Path, default=None,
                        help="classifier ONNX for the local service (default: $FACEMASK_MODEL or the shipped path)")
    parser.add_argument("--classifier-url", default=None, help="use this running classifier instead of starting one")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers of the local classifier")
    args = parser.parse_args(argv)
    args.model = Path(args.model or Settings.from_env().classifier_model)
    args.name = args.name or run_name("end_to_end", args)
    return args


def score_and_report(args, argv, predictions, annotations, timing: dict, classifier_info: dict,
                     detector: PyramidFaceDetector) -> dict:
    report = Report(args.name, "End-to-end: detector + classifier on annotated scenes",
                    command_line("bench.end_to_end", argv), out_dir=args.out_dir, detector=detector.config(),
                    box_expansion=args.box_expansion, split=args.split, scenes=len(annotations),
                    classifier={key: classifier_info.get(key) for key in (
                        "model_version", "arch", "classes", "model_file")})
    counts = Counter(label for a in annotations for label in a.labels)
    report.note(f"{len(annotations)} scenes from {args.images}; ground truth: "
                + ", ".join(f"{label} {n}" for label, n in counts.most_common()) + ".")
    results = {iou: evaluate(predictions, annotations, classifier_info["classes"], iou, args.box_expansion)
               for iou in IOU_THRESHOLDS}
    scored = scored_classes(classifier_info["classes"])
    report.table("AP, mAP and face-level accuracy", [
        {"IoU": iou, **{f"AP {label}": r["ap"].get(label) for label in scored}, "mAP": r["map"],
         "mAP (with/without)": r["map_two_class"], "mAP (every class score)": r["map_every_class"],
         **{f"acc {label}": r["accuracy"].get(label) for label in scored}, "acc (all)": r["accuracy_main"],
         "acc (found)": r["accuracy_found"], "worn wrong recall": r["incorrect_recall"],
         "worn wrong precision": r["incorrect_precision"], "unmasked called mask": r["unmasked_called_mask"],
         "faces found": r["detected"]}
        for iou, r in results.items()],
        f"mAP and acc (all) over {', '.join(scored)}. acc = correctly labelled ground-truth faces / all of them "
        "(missed = wrong); mAP (every class score) ranks each detection in every class by its probability, not only "
        "in its top label, as YOLOv5's val.py scores detectors; acc (found) = the same over the faces the detector "
        "found; worn wrong recall = acc incorrect; worn wrong precision = detections labelled incorrect that are "
        "masks worn wrong / all detections labelled incorrect; unmasked called mask = detected without_mask faces "
        "labelled with_mask / detected without_mask faces; faces found = any label.")
    ceiling = {iou: evaluate(with_true_labels(predictions, annotations, classifier_info["classes"], iou,
                                              args.box_expansion), annotations,
                             classifier_info["classes"], iou, args.box_expansion) for iou in IOU_THRESHOLDS}
    report.table("The same detections with a perfect classifier (each matched face given its true label)", [
        {"IoU": iou, **{f"AP {label}": r["ap"].get(label) for label in scored}, "mAP": r["map"],
         "mAP measured": results[iou]["map"], "acc (all)": r["accuracy_main"],
         "acc measured": results[iou]["accuracy_main"]} for iou, r in ceiling.items()],
        "The detector's ceiling for these scores: its misses and false alarms stay, every label on a matched face "
        "is right and every label is given with probability 1. The difference to 'measured' is the classifier's "
        "part of the gap.")
    labels = list(dict.fromkeys([*classifier_info["classes"], "unclassified", MISSED]))
    report.table("Ground truth vs prediction (face counts)", [
        {"IoU": iou, "ground truth": gt, "faces": sum(row.values()), **{label: row.get(label, 0) for label in labels}}
        for iou, r in results.items() for gt, row in sorted(r["confusion"].items(), key=_main_classes_first)])
    report.table("Detections matched to no ground-truth face, by predicted label", [
        {"IoU": iou, **{label: r["unmatched_detections"].get(label, 0) for label in labels[:-1]},
         "per image": sum(r["unmatched_detections"].values()) / len(annotations)} for iou, r in results.items()])
    report.table("Mean time per image (ms)", [{key: round(value, 1) for key, value in timing.items()}])
    report.data["results"] = {str(iou): r for iou, r in results.items()}
    report.data["perfect_classifier"] = {str(iou): r for iou, r in ceiling.items()}
    report.save()
    return results


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.classifier_url is None and not args.model.is_file():
        sys.exit(f"error: classifier model not found: {args.model} (export one with training/onnx_export.py, "
                 "or pass --model / --classifier-url)")
    annotations = scenes_from_args(args)
    settings = Settings.from_env()
    detector = create_detector(args.detector or settings.detector_model, settings.ort_threads).prepare(
        long_side=args.long_side, score_threshold=args.threshold)
    logs = args.out_dir / "tmp"
    logs.mkdir(parents=True, exist_ok=True)
    try:
        service = None if args.classifier_url else LocalService(
            "classification", workers=args.workers, env={"FACEMASK_MODEL": str(args.model.resolve())},
            log_path=logs / "classification.log").start()
    except RuntimeError as error:
        sys.exit(f"error: {error}")
    try:
        client = ClassifierClient(args.classifier_url if service is None else service.url)
        predictions, timing = run_pipeline(MaskPipeline(detector, client), annotations)
        classifier_info = client.info()
    finally:
        if service:
            service.stop()
    (logs / f"{args.name}_predictions.json").write_text(json.dumps(
        {a.image.name: [face.to_dict() for face in faces] for a, faces in zip(annotations, predictions)}))
    return score_and_report(args, argv, predictions, annotations, timing, classifier_info, detector)


if __name__ == "__main__":
    main()
