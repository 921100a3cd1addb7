"""The typed face result: the JSON it writes keeps the API's field order, and reads back unchanged."""
from __future__ import annotations

import json

import numpy as np

from facemask.core.results import (
    UNCLASSIFIED,
    Classification,
    Face,
    FaceResult,
    Faces,
    FrameResult,
    NotClassified,
    prediction_from_json,
)

BOX = np.array([10.04, 20.06, 110.0, 140.55], dtype=np.float32)
LANDMARKS = np.array([[40, 60], [80, 60], [60, 80], [45, 100], [75, 100.26]], dtype=np.float32)
PREDICTION = Classification("with_mask", 0.9, {"with_mask": 0.9, "without_mask": 0.1})


def test_image_face_json_has_the_api_fields_in_order_at_json_precision():
    face = FaceResult.from_prediction(BOX, LANDMARKS, 0.987654, PREDICTION)
    written = face.to_dict()
    assert list(written) == ["box", "landmarks", "det_score", "label", "score", "probabilities", "status"]
    assert written["box"] == [10.0, 20.1, 110.0, 140.6] and written["landmarks"][4] == [75.0, 100.3]
    assert written["det_score"] == 0.9877 and written["status"] == "classified"
    assert face.box == tuple(written["box"])  # what is drawn and scored is what the JSON says


def test_unclassified_face_keeps_its_place_and_says_why():
    face = FaceResult.from_prediction(BOX, LANDMARKS, 0.9, NotClassified("classifier down"))
    written = face.to_dict()
    assert (face.label, face.status, face.score, face.probabilities) == (UNCLASSIFIED, UNCLASSIFIED, None, None)
    assert list(written)[-1] == "error" and written["error"] == "classifier down"
    assert prediction_from_json({"filename": "face_0.png"}) == NotClassified("no prediction")
    assert prediction_from_json({"filename": "face_0.png", "error": "not an image"}) == NotClassified("not an image")
    assert prediction_from_json({"filename": "f", **PREDICTION.to_dict()}) == PREDICTION


def test_video_face_json_puts_its_track_before_the_label():
    face = FaceResult.from_prediction(BOX, LANDMARKS, 0.9, PREDICTION, track_id=3, source="followed", confirmed=True)
    assert list(face.to_dict()) == ["box", "landmarks", "det_score", "track_id", "source", "confirmed", "label",
                                    "score", "probabilities", "status"]


def test_faces_read_back_from_json_are_equal():
    faces = [FaceResult.from_prediction(BOX, LANDMARKS, 0.9, PREDICTION),
             FaceResult.from_prediction(BOX, LANDMARKS, 0.8, NotClassified("timeout"), track_id=-1, source="detected",
                                        confirmed=False)]
    frame = FrameResult(width=200, height=150, faces=Faces.from_rows(faces), timing_ms={"total": 1.0})
    written = json.loads(json.dumps(frame.to_dict()))
    assert [FaceResult.from_dict(face) for face in written["faces"]] == faces
    assert Faces.from_json(written["faces"]) == frame.faces
    assert written["counts"] == {"with_mask": 1, UNCLASSIFIED: 1}


def _three_faces() -> Faces:
    masked = Classification("with_mask", 0.95, {"with_mask": 0.95, "without_mask": 0.05})
    bare = Classification("without_mask", 0.6, {"with_mask": 0.4, "without_mask": 0.6})
    detections = [Face(BOX + 100 * i, LANDMARKS + 100 * i, score) for i, score in enumerate((0.99, 0.7, 0.55))]
    return Faces.from_detections(detections, [masked, bare, NotClassified("classifier down")])


def test_faces_are_columns_from_the_detector_to_the_json():
    faces = _three_faces()
    assert len(faces) == 3 and faces.boxes.shape == (3, 4) and faces.landmarks.shape == (3, 5, 2)
    assert faces.det_score.tolist() == [0.99, 0.7, 0.55]
    assert faces.label == ["with_mask", "without_mask", UNCLASSIFIED]
    assert faces.status == ["classified", "classified", UNCLASSIFIED] and faces.track_id == [None] * 3
    # the JSON is what each face has always written, row by row (at JSON precision: 0.1 px, 4-digit scores)
    rows = [FaceResult.from_prediction(BOX + 100 * i, LANDMARKS + 100 * i, score, prediction)
            for i, (score, prediction) in enumerate(zip((0.99, 0.7, 0.55), [
                Classification("with_mask", 0.95, {"with_mask": 0.95, "without_mask": 0.05}),
                Classification("without_mask", 0.6, {"with_mask": 0.4, "without_mask": 0.6}),
                NotClassified("classifier down")]))]
    assert faces.to_json() == [row.to_dict() for row in rows]
    assert json.dumps(faces.to_json()) == json.dumps([row.to_dict() for row in rows])
    assert list(faces) == rows and faces[1] == rows[1] and faces.counts == {"with_mask": 1, "without_mask": 1,
                                                                            UNCLASSIFIED: 1}


def test_faces_filter_by_class_and_score():
    faces = _three_faces()
    assert faces.filter(labels="with_mask").label == ["with_mask"]
    assert faces.filter(labels=["with_mask", UNCLASSIFIED]).det_score.tolist() == [0.99, 0.55]
    assert faces.filter(min_score=0.9).label == ["with_mask"]  # an unclassified face has no score: it drops out
    assert faces.filter(min_det_score=0.6).label == ["with_mask", "without_mask"]
    assert len(faces.filter(labels="incorrect")) == 0 and faces.filter(labels="incorrect").to_json() == []
    picked = faces[np.array([False, True, True])]
    assert picked.label == ["without_mask", UNCLASSIFIED] and picked.boxes.tolist() == faces.boxes[1:].tolist()
    assert faces[1:].to_json() == faces.to_json()[1:]


def test_video_faces_filter_the_confirmed_and_keep_their_tracks():
    rows = [FaceResult.from_prediction(BOX, LANDMARKS, 0.9, PREDICTION, track_id=i, source="detected",
                                       confirmed=confirmed) for i, confirmed in enumerate((True, False, None))]
    faces = Faces.from_rows(rows)
    assert faces.filter(confirmed=True).track_id == [0] and faces.filter(confirmed=False).track_id == [1, 2]
    assert faces.to_json() == [row.to_dict() for row in rows]


def test_faces_without_landmarks_read_back_as_they_were():
    other_system = [{"box": [1, 2, 30, 40], "det_score": 0.8, "label": "with_mask", "score": 0.7}]
    faces = Faces.from_json(other_system)
    assert faces[0].landmarks == () and np.isnan(faces.landmarks).all()
    assert faces.to_json()[0]["landmarks"] == [] and faces[0] == FaceResult.from_dict(other_system[0])
