"""Benchmark helpers (bench/common.py), end-to-end scoring, and one small run of bench.detection_recall."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench import detection_recall, end_to_end
from bench.common import SCENES_DIR, markdown_table
from facemask.core.boxes import expand_boxes, iou_matrix
from facemask.core.detector import RetinaFaceDetector
from facemask.core.images import decode_image
from facemask.core.paths import SCENE_SPLIT_FILE as SPLIT_FILE
from facemask.core.results import Classification, FaceResult
from training.annotations import DatasetError, average_precision, greedy_match, load_scenes, parse_voc, subsample

SAMPLES = Path(__file__).resolve().parents[1] / "sample-images"


def write_voc(path: Path, filename: str, size: tuple[int, int], objects: list[tuple[str, list[float]]]) -> None:
    body = "".join(
        f"<object><name>{label}</name><difficult>0</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
        f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>" for label, (x1, y1, x2, y2) in objects)
    path.write_text(f"<annotation><folder>images</folder><filename>{filename}</filename><size><width>{size[0]}"
                    f"</width><height>{size[1]}</height><depth>3</depth></size>{body}</annotation>")


def test_iou_matrix_known_values():
    a = [[0, 0, 10, 10], [0, 0, 0, 10]]  # the second box has no area
    b = [[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]]
    np.testing.assert_allclose(iou_matrix(a, b), [[1.0, 50 / 150, 0.0], [0.0, 0.0, 0.0]])
    assert iou_matrix(np.zeros((0, 4)), b).shape == (0, 3)


def test_greedy_match_highest_score_first_one_to_one():
    ground_truth = [[0, 0, 10, 10], [8, 0, 18, 10]]
    # The low-scoring box sits exactly on the first face, but the high-scoring one claims it first.
    predictions, scores = [[0, 0, 10, 10], [1, 0, 11, 10]], [0.6, 0.9]
    assert greedy_match(predictions, scores, ground_truth, 0.5).tolist() == [-1, 0]
    # At a looser IoU the displaced box falls back to the other face (IoU 20/180).
    assert greedy_match(predictions, scores, ground_truth, 0.1).tolist() == [1, 0]
    assert greedy_match(predictions, scores, np.zeros((0, 4)), 0.5).tolist() == [-1, -1]
    assert greedy_match(np.zeros((0, 4)), [], ground_truth, 0.5).tolist() == []


def test_expand_boxes_about_centre():
    np.testing.assert_allclose(expand_boxes([[10, 10, 20, 30]], 1.2), [[9, 8, 21, 32]])
    np.testing.assert_allclose(expand_boxes([[10, 10, 20, 30]], 1.0), [[10, 10, 20, 30]])
    np.testing.assert_allclose(expand_boxes([[10, 10, 20, 30]], 1.0, 0.5, shift_y=0.1), [[10, 17, 20, 27]])
    # A box grown by s keeps IoU 1/s^2 with the original: the threshold the box-convention sweep relies on.
    assert iou_matrix(expand_boxes([[0, 0, 10, 10]], 1.5), [[0, 0, 10, 10]])[0, 0] == pytest.approx(1 / 2.25)


def test_average_precision_voc_all_point():
    # Ranked hits T F T F over 3 faces: precision envelope 1 up to recall 1/3, then 2/3 up to recall 2/3.
    assert average_precision([0.9, 0.8, 0.7, 0.6], [True, False, True, False], 3) == pytest.approx(5 / 9)
    assert average_precision([0.1, 0.9], [True, False], 1) == pytest.approx(0.5)  # ranking, not input order
    assert average_precision([0.9, 0.8], [True, True], 4) == pytest.approx(0.5)  # missed faces cap recall
    assert average_precision([], [], 2) == 0.0
    assert math.isnan(average_precision([0.9], [False], 0))


def test_parse_voc_and_load_scenes(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "annotations").mkdir()
    Image.new("RGB", (64, 48)).save(tmp_path / "images" / "scene.jpg")
    write_voc(tmp_path / "annotations" / "scene.xml", "scene.jpg", (64, 48),
              [("with_mask", [1, 2, 11, 12]), ("mask_weared_incorrect", [30, 5, 50, 40])])
    annotation = parse_voc(tmp_path / "annotations" / "scene.xml", tmp_path / "images")
    assert annotation.image == tmp_path / "images" / "scene.jpg"
    assert (annotation.width, annotation.height) == (64, 48)
    assert annotation.labels == ["with_mask", "mask_weared_incorrect"]
    np.testing.assert_array_equal(annotation.boxes, [[1, 2, 11, 12], [30, 5, 50, 40]])
    assert [a.image.name for a in load_scenes(tmp_path / "images", tmp_path / "annotations")] == ["scene.jpg"]
    (tmp_path / "images" / "scene.jpg").unlink()
    with pytest.raises(DatasetError, match="missing"):
        load_scenes(tmp_path / "images", tmp_path / "annotations")


def test_subsample_and_table():
    items = list(range(100))
    picked = subsample(items, 10, seed=3)
    assert picked == subsample(items, 10, seed=3) and picked == sorted(picked) and len(set(picked)) == 10
    assert subsample(items, None) == items
    assert markdown_table([{"a": 0.12345, "b": 123.456, "c": "x"}, {"a": float("nan")}]).splitlines() == [
        "| a | b | c |", "|---|---|---|", "| 0.123 | 123.5 | x |", "| - | - | - |"]


def test_end_to_end_scoring_hand_made_scene(tmp_path):
    write_voc(tmp_path / "s.xml", "s.jpg", (200, 100), [
        ("with_mask", [0, 0, 20, 20]), ("without_mask", [50, 0, 70, 20]), ("mask_weared_incorrect", [100, 0, 120, 20])])
    annotations = [parse_voc(tmp_path / "s.xml")]

    def face(box, det_score, label, p):
        other = "without_mask" if label == "with_mask" else "with_mask"
        return FaceResult.from_prediction(box, [], det_score, Classification(label, p, {label: p, other: 1 - p}))

    predictions = [[face([0, 0, 20, 20], 0.9, "with_mask", 0.8),        # right
                    face([50, 0, 70, 20], 0.8, "with_mask", 0.6),       # wrong label
                    face([100, 0, 120, 20], 0.7, "without_mask", 0.9),  # on a mask_weared_incorrect face: ignored
                    face([150, 50, 170, 70], 0.6, "without_mask", 0.9)]]  # background
    result = end_to_end.evaluate(predictions, annotations, ["with_mask", "without_mask"], 0.5)
    # with_mask: hit ranked above the false alarm -> AP 1; without_mask: its only face was labelled with_mask.
    assert result["ap"] == {"with_mask": pytest.approx(1.0), "without_mask": 0.0}
    assert result["map"] == pytest.approx(0.5)
    assert result["accuracy"]["with_mask"] == 1.0 and result["accuracy"]["without_mask"] == 0.0
    assert result["accuracy_main"] == pytest.approx(0.5)
    assert result["confusion"]["mask_weared_incorrect"] == {"without_mask": 1}
    assert result["unmatched_detections"] == {"without_mask": 1}
    assert result["detected"] == 1.0


def test_end_to_end_scores_three_classes_when_the_classifier_knows_incorrect(tmp_path):
    write_voc(tmp_path / "s.xml", "s.jpg", (300, 100), [
        ("with_mask", [0, 0, 20, 20]), ("without_mask", [50, 0, 70, 20]), ("mask_weared_incorrect", [100, 0, 120, 20]),
        ("without_mask", [200, 0, 220, 20])])
    annotations = [parse_voc(tmp_path / "s.xml")]
    classes = ["incorrect", "with_mask", "without_mask"]

    def face(box, label, p=0.8):
        return FaceResult.from_prediction(box, [], 0.9, Classification(label, p, {
            c: p if c == label else (1 - p) / 2 for c in classes}))

    predictions = [[face([0, 0, 20, 20], "with_mask"), face([50, 0, 70, 20], "without_mask"),
                    face([100, 0, 120, 20], "incorrect"), face([200, 0, 220, 20], "with_mask", 0.6)]]
    result = end_to_end.evaluate(predictions, annotations, classes, 0.5)
    assert result["scored_classes"] == ["with_mask", "without_mask", "incorrect"]
    assert result["ap"]["incorrect"] == pytest.approx(1.0) and result["ap"]["without_mask"] == pytest.approx(0.5)
    assert result["ap"]["with_mask"] == pytest.approx(1.0)  # its false alarm ranks below the hit
    assert result["map"] == pytest.approx((1.0 + 0.5 + 1.0) / 3)
    assert result["accuracy_main"] == pytest.approx(3 / 4)
    assert result["unmasked_called_mask"] == pytest.approx(1 / 2)
    assert result["confusion"]["incorrect"] == {"incorrect": 1}
    assert result["accuracy_found"] == pytest.approx(3 / 4)
    # Ranked in every class, the unmasked face labelled with_mask (p 0.2 of without_mask) still counts for without_mask.
    assert result["ap_every_class"]["without_mask"] == pytest.approx(1.0)
    # A perfect classifier behind the same detections: every matched face right, AP 1 for each class.
    ceiling = end_to_end.evaluate(end_to_end.with_true_labels(predictions, annotations, classes, 0.5), annotations,
                                  classes, 0.5)
    assert ceiling["map"] == pytest.approx(1.0) and ceiling["accuracy_main"] == 1.0
    assert ceiling["confusion"]["without_mask"] == {"without_mask": 2}
    # A two-class model is scored as before: the incorrect face is left out.
    two_class = end_to_end.evaluate(predictions, annotations, ["with_mask", "without_mask"], 0.5)
    assert two_class["scored_classes"] == ["with_mask", "without_mask"] and "incorrect" not in two_class["ap"]


def test_end_to_end_without_model_exits_with_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        end_to_end.main(["--model", str(tmp_path / "absent.onnx"), "--out-dir", str(tmp_path)])
    assert "classifier model not found" in str(stop.value) and "\n" not in str(stop.value)


def test_threshold_applied_after_detection_equals_detecting_at_it():
    """detection_recall runs the detector once at the lowest threshold and filters higher ones afterwards."""
    image = decode_image(SAMPLES / "group_mixed.jpg")
    detector = RetinaFaceDetector()
    strict = detector.prepare(long_side=640, score_threshold=0.8).detect(image)
    loose = [f for f in detector.prepare(long_side=640, score_threshold=0.3).detect(image) if f.det_score >= 0.8]
    assert len(strict) >= 3 and len(loose) == len(strict)
    np.testing.assert_allclose([f.box for f in loose], [f.box for f in strict])


@pytest.mark.slow
def test_detection_recall_smoke(tmp_path):
    crops = tmp_path / "crops"
    for label, names in {"with_mask": ["group_mixed.jpg", "group_unmasked.jpg"], "without_mask": []}.items():
        (crops / label).mkdir(parents=True)
        for name in names:
            (crops / label / name).write_bytes((SAMPLES / name).read_bytes())
    Image.new("RGB", (300, 200), (128, 128, 128)).save(crops / "without_mask" / "blank.jpg")  # no face in it

    # Ground truth = the detector's own native-size boxes, plus one face in an empty corner it cannot find.
    (tmp_path / "images").mkdir()
    (tmp_path / "annotations").mkdir()
    image_name = "group_small_faces.jpg"
    (tmp_path / "images" / image_name).write_bytes((SAMPLES / image_name).read_bytes())
    image = decode_image(SAMPLES / image_name)
    faces = RetinaFaceDetector().prepare(long_side=None, score_threshold=0.5).detect(image)
    assert len(faces) >= 4
    objects = [("with_mask" if i % 2 else "without_mask", [round(float(v), 2) for v in f.box])
               for i, f in enumerate(faces)] + [("mask_weared_incorrect", [0, 0, 12, 12])]
    write_voc(tmp_path / "annotations" / "group_small_faces.xml", image_name, image.shape[1::-1], objects)

    out = tmp_path / "results"
    result = detection_recall.main([
        "--crops", str(crops), "--images", str(tmp_path / "images"), "--annotations", str(tmp_path / "annotations"),
        "--crop-long-sides", "320", "--scene-long-sides", "none", "--thresholds", "0.5",
        "--expansions", "1.0", "1.5", "--out-dir", str(out), "--name", "smoke"])

    crop_rows = result["tables"]["Crop set: images with at least one face, sweep"]
    assert [(r["long_side"], r["with_mask"], r["without_mask"]) for r in crop_rows] == [("320", 1.0, 0.0)]
    defaults = result["tables"]["Crop set: images with at least one face, service defaults"][0]
    assert (defaults["long_side"], defaults["with_mask"], defaults["without_mask"]) == ("auto", 1.0, 0.0)

    (scene_row,) = next(rows for heading, rows in result["tables"].items() if heading.startswith("Scenes: recall"))
    assert scene_row["long_side"] == "native"
    assert scene_row["with_mask@0.5"] == scene_row["without_mask@0.5"] == 1.0
    assert scene_row["incorrect@0.5"] == 0.0 and scene_row["FP/img"] == 0.0
    assert scene_row["all@0.5"] == pytest.approx(len(faces) / (len(faces) + 1))
    boxes = {r["boxes"]: r["all@0.5"] for r in result["tables"][next(
        k for k in result["tables"] if k.startswith("Scenes: box convention"))]}
    assert boxes["x1.0"] == boxes["fitted"] == pytest.approx(len(faces) / (len(faces) + 1))
    assert boxes["x1.5"] == 0.0  # IoU of a 1.5x box with the original is 1/2.25 < 0.5
    assert result["scenes"]["box_geometry"]["width_ratio"] == pytest.approx(1.0, abs=1e-3)

    saved = json.loads((out / "smoke.json").read_text())
    assert saved["tables"]["Crop set: images with at least one face, sweep"][0]["with_mask"] == 1.0
    assert "| native |" in (out / "smoke.md").read_text()
    assert (out / "smoke_crops.png").stat().st_size > 10_000 and (out / "smoke_scenes.png").stat().st_size > 10_000


def test_flip_pass_boxes_land_on_the_same_faces():
    from bench.detector_options import detect_variant

    image = decode_image(SAMPLES / "group_mixed.jpg")
    detector = RetinaFaceDetector()
    (plain, plain_scores), _ = detect_variant(detector, image, [(640, False)], 0.5)
    (mirrored, _), _ = detect_variant(detector, image, [(640, True)], 0.5)
    assert len(plain) >= 3 and abs(len(mirrored) - len(plain)) <= 1
    assert (iou_matrix(plain, mirrored).max(axis=1) > 0.7).mean() >= 0.8
    (merged, merged_scores), _ = detect_variant(detector, image, [(640, False), (640, True)], 0.5)
    assert len(merged) <= len(plain) + len(mirrored) and merged_scores.max() >= plain_scores.max() - 1e-6


@pytest.mark.skipif(not SCENES_DIR.is_dir(), reason="scene dataset not found")
@pytest.mark.slow
def test_detector_options_on_held_out_photos(tmp_path):
    from bench import detector_options

    result = detector_options.main(["--split", "test", "--limit", "3", "--detectors", "stock", "default",
                                    "--variants", "640", "1024 + flip", "--out-dir", str(tmp_path), "--name", "opt"])
    assert [(r["detector"], r["variant"]) for r in result["rows"]] == [
        ("stock", "640"), ("stock", "1024 + flip"),
        ("retinaface_mnet025_masks.onnx", "640"), ("retinaface_mnet025_masks.onnx", "1024 + flip")]
    split = json.loads(SPLIT_FILE.read_text())
    saved = json.loads((tmp_path / "opt.json").read_text())
    assert saved["meta"]["split"] == "test" and saved["meta"]["scenes"] == 3 and len(split["test"]) > 3
    for points in result["curves"].values():  # a higher threshold never finds more
        assert all(a["all"] >= b["all"] and a["fp"] >= b["fp"] for a, b in zip(points, points[1:]))
    assert (tmp_path / "opt.png").stat().st_size > 10_000


def test_classifier_selection_keeps_the_close_up_bar_before_real_photo_accuracy():
    from bench.select_classifier import CLOSE_UP_BAR, choose

    rows = [{"candidate": "loses_close_ups", "real_acc3": 0.95, "crop_set_two_labels": CLOSE_UP_BAR - 0.001},
            {"candidate": "keeps_them", "real_acc3": 0.90, "crop_set_two_labels": CLOSE_UP_BAR},
            {"candidate": "weaker", "real_acc3": 0.89, "crop_set_two_labels": 0.999}]
    assert choose(rows)["candidate"] == "keeps_them"
    assert choose(rows[:1]) is None
