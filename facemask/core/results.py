"""What the pipeline reports: typed classifications, faces and frames, turned into JSON only at the edge (service
responses, the CLI's JSON files) by their to_dict(), and read from it only there (the classifier client).

Coordinates and scores are kept at the precision the JSON reports (box and landmarks 0.1 px, detector score 4
digits), so what is drawn, counted and scored by the benchmarks is exactly what the JSON says.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import partial
from typing import Iterable

import numpy as np

UNCLASSIFIED = "unclassified"
CLASSIFIED = "classified"

Box = tuple[float, float, float, float]
Landmarks = tuple[tuple[float, float], ...]


def as_box(values: Iterable) -> Box:
    x1, y1, x2, y2 = values
    return float(x1), float(y1), float(x2), float(y2)


def as_landmarks(points: Iterable) -> Landmarks:
    return tuple((float(x), float(y)) for x, y in points)


def rounded_box(box: Iterable) -> Box:
    return as_box(round(float(v), 1) for v in box)


def rounded_landmarks(landmarks: Iterable) -> Landmarks:
    return as_landmarks((round(float(x), 1), round(float(y), 1)) for x, y in landmarks)


def rounded_det_score(score: float) -> float:
    return round(float(score), 4)


@dataclass
class Face:
    """One detected face in original-image pixels, as the detector gives it. The face types share their names:
    box, landmarks and det_score (the detector's confidence) here, in tracking.TrackedFace (which adds how the
    face was found and its track) and in FaceResult (which adds the classifier's label, score and probabilities)."""

    box: np.ndarray  # (4,) float32 x1, y1, x2, y2
    landmarks: np.ndarray  # (5, 2) float32: right eye, left eye, nose, right mouth corner, left mouth corner
    det_score: float


@dataclass(frozen=True)
class Classification:
    """What the classifier says about one crop: the most likely class (label), its probability (score) and every
    class's probability, rounded as /classify reports them."""

    label: str
    score: float
    probabilities: dict[str, float]

    @classmethod
    def from_probabilities(cls, probabilities: dict[str, float], label: str | None = None) -> "Classification":
        """Unrounded probabilities, labelled with their leading class unless `label` says otherwise (a track's
        steady label); values rounded to 5 digits, as the service answers."""
        label = max(probabilities, key=probabilities.__getitem__) if label is None else label
        return cls(label, round(float(probabilities[label]), 5),
                   {name: round(float(value), 5) for name, value in probabilities.items()})

    def to_dict(self) -> dict:
        """The /classify result fields, in the order the service has always written them."""
        return {"label": self.label, "score": self.score, "probabilities": self.probabilities}


@dataclass(frozen=True)
class NotClassified:
    """A crop the classifier gave no answer for, and why (the service was unreachable, the crop unreadable)."""

    error: str


Prediction = Classification | NotClassified


def prediction_from_json(result: dict) -> Prediction:
    """One entry of a /classify answer's "results": a classification, or the error the service gave the crop."""
    if "label" in result:
        return Classification(result["label"], result["score"], result["probabilities"])
    return NotClassified(result.get("error", "no prediction"))


@dataclass(frozen=True)
class FaceResult:
    """One face: where the detector found it and what the classifier said.

    status is "classified" (label, score, probabilities set) or "unclassified" (label "unclassified", score and
    probabilities None, error says why): a face is never dropped because classification failed. Video faces also
    carry their track (track_id), how they were found in this frame (source: "detected" or "followed") and whether
    their track is confirmed (shown and counted).
    """

    box: Box  # x1, y1, x2, y2 in original-image pixels
    landmarks: Landmarks  # 5 (x, y): right eye, left eye, nose, right mouth corner, left mouth corner
    det_score: float
    label: str
    score: float | None
    probabilities: dict[str, float] | None
    status: str
    error: str | None = None
    track_id: int | None = None
    source: str | None = None
    confirmed: bool | None = None

    @classmethod
    def from_prediction(cls, box, landmarks, det_score: float, prediction: Prediction,
                        track_id: int | None = None, source: str | None = None,
                        confirmed: bool | None = None) -> "FaceResult":
        """A face from detector output (arrays are fine) and what the classifier said about its crop."""
        located = partial(cls, box=rounded_box(box), landmarks=rounded_landmarks(landmarks),
                          det_score=rounded_det_score(det_score), track_id=track_id, source=source,
                          confirmed=confirmed)
        if isinstance(prediction, Classification):
            return located(label=prediction.label, score=prediction.score, probabilities=prediction.probabilities,
                           status=CLASSIFIED)
        return located(label=UNCLASSIFIED, score=None, probabilities=None, status=UNCLASSIFIED,
                       error=prediction.error)

    @classmethod
    def from_dict(cls, face: dict) -> "FaceResult":
        """A face read back from JSON (this product's files, or another system's faces in the same form, which may
        lack landmarks and status); values are taken as they are."""
        label = face.get("label", UNCLASSIFIED)
        return cls(box=as_box(face["box"]), landmarks=as_landmarks(face.get("landmarks", ())),
                   det_score=float(face["det_score"]), label=label, score=face.get("score"),
                   probabilities=face.get("probabilities"),
                   status=face.get("status", UNCLASSIFIED if label == UNCLASSIFIED else CLASSIFIED),
                   error=face.get("error"), track_id=face.get("track_id"), source=face.get("source"),
                   confirmed=face.get("confirmed"))

    def to_dict(self) -> dict:
        """The face's JSON object (field order as the API has always written it)."""
        result = {"box": list(self.box), "landmarks": [list(point) for point in self.landmarks],
                  "det_score": self.det_score}
        for name in ("track_id", "source", "confirmed"):
            if getattr(self, name) is not None:
                result[name] = getattr(self, name)
        result.update(label=self.label, score=self.score, probabilities=self.probabilities, status=self.status)
        if self.error is not None:
            result["error"] = self.error
        return result


def label_counts(faces: Iterable[FaceResult]) -> dict[str, int]:
    return dict(Counter(face.label for face in faces))


@dataclass
class FrameResult:
    width: int
    height: int
    faces: list[FaceResult]
    timing_ms: dict
    error: str | None = None

    @property
    def counts(self) -> dict:
        return label_counts(self.faces)

    def to_dict(self) -> dict:
        result = {"width": self.width, "height": self.height, "faces": [face.to_dict() for face in self.faces],
                  "counts": self.counts, "timing_ms": self.timing_ms}
        if self.error:
            result["error"] = self.error
        return result
