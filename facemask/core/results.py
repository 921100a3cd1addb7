"""What the pipeline reports: typed classifications, faces and frames, turned into JSON only at the edge (service
responses, the CLI's JSON files) by their to_dict(), and read from it only there (the classifier client).

Coordinates and scores are kept at the precision the JSON reports (box and landmarks 0.1 px, detector score 4
digits), so what is drawn, counted and scored by the benchmarks is exactly what the JSON says.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import partial
from typing import Iterable, Iterator, Sequence, overload

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


class Faces(Sequence[FaceResult]):
    """The faces of one image or video frame, as columns, one row per face (the model: supervision's Detections).

    Columns: boxes (N, 4) and landmarks (N, 5, 2) in image pixels and det_score (N,), numpy arrays at JSON precision;
    track_id, label, score, probabilities and status per face, and the JSON's optional error, source and confirmed.
    A face whose landmarks are unknown (read from another system's JSON) has NaN landmarks.

    - `faces[i]` and `for face in faces`: one face at a time, as a FaceResult;
    - `faces[mask]`, `faces[indices]`, `faces[a:b]`, `faces.filter(...)`: a Faces of those rows;
    - `faces.to_json()`: the "faces" list of the API's JSON, field for field as it has always been written.
    """

    def __init__(self, boxes: np.ndarray, landmarks: np.ndarray, det_score: np.ndarray, *,
                 track_id: list[int | None], label: list[str], score: list[float | None],
                 probabilities: list[dict[str, float] | None], status: list[str], error: list[str | None],
                 source: list[str | None], confirmed: list[bool | None]):
        self.boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        self.landmarks = np.asarray(landmarks, dtype=np.float64).reshape(-1, 5, 2)
        self.det_score = np.asarray(det_score, dtype=np.float64).reshape(-1)
        self.track_id, self.label, self.score, self.probabilities = track_id, label, score, probabilities
        self.status, self.error, self.source, self.confirmed = status, error, source, confirmed
        lengths = {len(column) for column in (self.boxes, self.landmarks, self.det_score, track_id, label, score,
                                              probabilities, status, error, source, confirmed)}
        if len(lengths) > 1:
            raise ValueError(f"the columns of Faces differ in length: {sorted(lengths)}")

    @classmethod
    def from_rows(cls, rows: Iterable[FaceResult]) -> "Faces":
        rows = list(rows)
        landmarks = [face.landmarks if len(face.landmarks) == 5 else [[np.nan, np.nan]] * 5 for face in rows]
        return cls(np.array([face.box for face in rows], dtype=np.float64).reshape(-1, 4),
                   np.array(landmarks, dtype=np.float64).reshape(-1, 5, 2),
                   np.array([face.det_score for face in rows], dtype=np.float64),
                   track_id=[face.track_id for face in rows], label=[face.label for face in rows],
                   score=[face.score for face in rows], probabilities=[face.probabilities for face in rows],
                   status=[face.status for face in rows], error=[face.error for face in rows],
                   source=[face.source for face in rows], confirmed=[face.confirmed for face in rows])

    @classmethod
    def from_detections(cls, detections: Iterable[Face], predictions: Iterable[Prediction] | None = None) -> "Faces":
        """The detector's faces, rounded to JSON precision, with what the classifier said about each crop (None:
        not classified yet, label "unclassified" and no error)."""
        detections = list(detections)
        if predictions is None:
            return cls.from_rows(FaceResult(rounded_box(face.box), rounded_landmarks(face.landmarks),
                                            rounded_det_score(face.det_score), UNCLASSIFIED, None, None, UNCLASSIFIED)
                                 for face in detections)
        return cls.from_rows(FaceResult.from_prediction(face.box, face.landmarks, face.det_score, prediction)
                             for face, prediction in zip(detections, predictions))

    @classmethod
    def from_json(cls, faces: Iterable[dict]) -> "Faces":
        """The "faces" list of this product's JSON (or another system's faces in the same form)."""
        return cls.from_rows(FaceResult.from_dict(face) for face in faces)

    def __len__(self) -> int:
        return len(self.label)

    def _row(self, i: int) -> FaceResult:
        landmarks = self.landmarks[i]
        return FaceResult(box=as_box(self.boxes[i]),
                          landmarks=() if np.isnan(landmarks).all() else as_landmarks(landmarks),
                          det_score=float(self.det_score[i]), label=self.label[i], score=self.score[i],
                          probabilities=self.probabilities[i], status=self.status[i], error=self.error[i],
                          track_id=self.track_id[i], source=self.source[i], confirmed=self.confirmed[i])

    def __iter__(self) -> Iterator[FaceResult]:
        return (self._row(i) for i in range(len(self)))

    @overload
    def __getitem__(self, index: int) -> FaceResult: ...

    @overload
    def __getitem__(self, index: slice | np.ndarray | list) -> "Faces": ...

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return self._row(int(index))
        rows = np.arange(len(self))[index]
        return Faces(self.boxes[rows], self.landmarks[rows], self.det_score[rows],
                     **{name: [getattr(self, name)[i] for i in rows] for name in self._LISTS})

    _LISTS = ("track_id", "label", "score", "probabilities", "status", "error", "source", "confirmed")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Faces) and list(self) == list(other)

    def __repr__(self) -> str:
        return f"Faces({len(self)} faces: {self.counts})"

    def filter(self, labels: str | Iterable[str] | None = None, min_score: float | None = None,
               min_det_score: float | None = None, confirmed: bool | None = None) -> "Faces":
        """The faces of these classes (labels), with a classifier score of at least min_score (unclassified faces
        have none, so they drop out), a detector score of at least min_det_score, and, for video, confirmed or not."""
        keep = np.ones(len(self), dtype=bool)
        if labels is not None:
            wanted = {labels} if isinstance(labels, str) else set(labels)
            keep &= np.array([label in wanted for label in self.label], dtype=bool)
        if min_score is not None:
            keep &= np.array([score is not None and score >= min_score for score in self.score], dtype=bool)
        if min_det_score is not None:
            keep &= self.det_score >= min_det_score
        if confirmed is not None:
            keep &= np.array([bool(value) == confirmed for value in self.confirmed], dtype=bool)
        return self[keep]

    @property
    def counts(self) -> dict[str, int]:
        """Faces per label, in the order the labels first appear (the JSON's "counts" of an image)."""
        return dict(Counter(self.label))

    def to_json(self) -> list[dict]:
        return [face.to_dict() for face in self]


@dataclass
class FrameResult:
    width: int
    height: int
    faces: Faces
    timing_ms: dict
    error: str | None = None

    @property
    def counts(self) -> dict:
        return self.faces.counts

    def to_dict(self) -> dict:
        result = {"width": self.width, "height": self.height, "faces": self.faces.to_json(),
                  "counts": self.counts, "timing_ms": self.timing_ms}
        if self.error:
            result["error"] = self.error
        return result
