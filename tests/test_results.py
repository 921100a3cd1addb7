"""The typed face result: the JSON it writes keeps the API's field order, and reads back unchanged."""
from __future__ import annotations

import json

import numpy as np

from facemask.core.results import (
    UNCLASSIFIED,
    Classification,
    FaceResult,
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
    frame = FrameResult(width=200, height=150, faces=faces, timing_ms={"total": 1.0})
    written = json.loads(json.dumps(frame.to_dict()))
    assert [FaceResult.from_dict(face) for face in written["faces"]] == faces
    assert written["counts"] == {"with_mask": 1, UNCLASSIFIED: 1}
