"""Detector fine-tuning: ONNX <-> torch round trip, prior matching, augmentation geometry, a tiny real training run."""
from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from facemask.core.detector import FINE_TUNED_MODEL, STOCK_SOURCE, RetinaFaceDetector, create_detector
from facemask.core.images import decode_image
from facemask.core.settings import Settings
from tests.conftest import REPO_ROOT, SAMPLES
from training.detector_data import FaceImage, augment
from training.detector_model import MultiBoxLoss, encode_boxes, load_onnx, priors, to_torch, write_weights
from training.splits import load_split

pytestmark = pytest.mark.slow  # minutes: torch training runs

SCENES = REPO_ROOT / ".." / "shared" / "datasets" / "face-mask-scenes-andrewmvd"
REAL_PHOTOS = REPO_ROOT / ".." / "shared" / "datasets" / "face-mask-ilc-2021"
needs_scenes = pytest.mark.skipif(not SCENES.is_dir(), reason=f"dataset not found at {SCENES}")
needs_real_photos = pytest.mark.skipif(not REAL_PHOTOS.is_dir(), reason=f"dataset not found at {REAL_PHOTOS}")


@pytest.fixture(scope="module")
def group_photo() -> np.ndarray:
    return decode_image(SAMPLES / "group_mixed.jpg")


@pytest.fixture(scope="module")
def stock_faces(group_photo):
    return RetinaFaceDetector(model="stock").prepare(long_side=1024).detect(group_photo)


def network_input(image: np.ndarray) -> np.ndarray:
    return RetinaFaceDetector.network_input(image, 640 / max(image.shape[:2]))


def test_torch_module_and_written_back_onnx_match_the_stock_model(group_photo):
    stock = load_onnx()
    blob = network_input(group_photo)
    reference = ort.InferenceSession(stock.SerializeToString()).run(None, {"input": blob})
    module = to_torch(stock).eval()
    with torch.no_grad():
        loc, logits, landmarks = module(torch.from_numpy(blob))
    np.testing.assert_allclose(loc.numpy(), reference[0], atol=1e-3)
    np.testing.assert_allclose(logits.softmax(-1).numpy(), reference[1], atol=1e-4)
    np.testing.assert_allclose(landmarks.numpy(), reference[2], atol=1e-3)

    with torch.no_grad():  # a changed weight must reach the exported graph, and only through it
        next(module.parameters()).mul_(0.5)
    exported = write_weights(module, stock, {"note": "test"})
    changed = ort.InferenceSession(exported.SerializeToString()).run(None, {"input": blob})
    assert not np.allclose(changed[1], reference[1], atol=1e-3)
    assert {p.key: p.value for p in exported.metadata_props}["note"] == "test"
    assert [o.name for o in exported.graph.output] == ["loc", "conf", "landmarks"]


def test_every_face_gets_a_prior_and_tiny_faces_are_ignored_not_negative():
    prior = priors(128, 128)
    boxes = torch.tensor([[20.0, 20.0, 60.0, 64.0], [100.0, 100.0, 104.0, 103.0]])
    assignment = MultiBoxLoss().match(prior, boxes, ignored=torch.tensor([False, True]))
    assert (assignment == 0).sum() >= 1 and not (assignment == 1).any()
    assert (assignment == -2).any(), "priors on the ignored face must not be mined as negatives"
    # Encoding then decoding (as the serving detector does) gives the box back.
    positives = prior[assignment == 0]
    encoded = encode_boxes(boxes[[0]].expand(len(positives), 4), positives)
    centres = positives[:, :2] + encoded[:, :2] * 0.1 * positives[:, 2:]
    sizes = positives[:, 2:] * torch.exp(encoded[:, 2:] * 0.2)
    torch.testing.assert_close(torch.cat([centres - sizes / 2, centres + sizes / 2], 1),
                               boxes[[0]].expand(len(positives), 4), atol=1e-3, rtol=0)


def test_augmentation_keeps_boxes_and_landmarks_on_the_faces(group_photo, stock_faces, tmp_path):
    path = tmp_path / "group.png"
    path.write_bytes((SAMPLES / "group_mixed.jpg").read_bytes())
    sample = FaceImage(path, np.array([f.box for f in stock_faces]), np.array([f.landmarks for f in stock_faces]),
                       "scene", (500, 900))
    for seed, flip in [(seed, flip) for seed in range(6) for flip in (False, True)]:
        blob, target = augment(sample, group_photo, 384, np.random.default_rng(seed), flip=flip)
        assert blob.shape == (3, 384, 384)
        boxes, points = target["boxes"].numpy(), target["landmarks"].numpy()
        assert len(boxes) >= 1 and target["has_landmarks"].all()
        whole = (boxes[:, :2] > 0).all(axis=1) & (boxes[:, 2:] < 384).all(axis=1)  # not cut by the crop
        nose = points[whole, 2]
        assert ((nose >= boxes[whole, :2]) & (nose <= boxes[whole, 2:])).all()
        # Frontal faces: the subject's right eye (index 0) is on the image's left, flipped or not.
        assert (points[whole, 0, 0] < points[whole, 1, 0]).all()


def test_heads_without_a_teacher_face_are_ignored_and_the_others_taught_in_the_scene_convention(group_photo,
                                                                                              stock_faces, tmp_path):
    from training.annotations import Annotation
    from training.detector_data import real_photo_samples, to_head_box

    path = tmp_path / "group.png"
    path.write_bytes((SAMPLES / "group_mixed.jpg").read_bytes())
    heads = np.array([f.box for f in stock_faces[:2]], dtype=np.float32) + np.array([-5, -20, 5, 5], np.float32)
    annotation = Annotation(path, group_photo.shape[1], group_photo.shape[0], heads, ["with_mask", "without_mask"])
    teacher = {path.name: [[stock_faces[0].box.tolist(), stock_faces[0].landmarks.tolist()], None]}
    [sample] = real_photo_samples([annotation], teacher)
    np.testing.assert_allclose(sample.boxes[0], to_head_box(stock_faces[0].box), atol=0.01)
    assert sample.ignored.tolist() == [False, True] and np.isnan(sample.landmarks[1]).all()
    blob, target = augment(sample, group_photo, 2048, np.random.default_rng(0), train=False)
    assert target["ignored"].tolist() == [False, True], "the head no detector sees is neither face nor background"


def test_default_detector_is_the_fine_tuned_model_and_stock_stays_selectable():
    assert FINE_TUNED_MODEL.is_file(), "detection/model/ must ship the fine-tuned detector"
    assert RetinaFaceDetector().model_source == str(FINE_TUNED_MODEL)
    assert RetinaFaceDetector(model="stock").model_source == STOCK_SOURCE
    settings = Settings.from_env({"FACEMASK_DETECTOR_MODEL": "stock"})
    assert create_detector(settings.detector_model).model_source == STOCK_SOURCE
    with pytest.raises(FileNotFoundError):
        RetinaFaceDetector(model="/no/such/detector.onnx")


def test_shipped_split_keeps_photos_apart():
    split = load_split(REPO_ROOT / "detection" / "model" / "scene_split.json")
    names = [set(split[name]) for name in ("train", "valid", "test")]
    assert sum(map(len, names)) == len(set.union(*names)) == 853
    assert len(names[2]) >= 150


@needs_scenes
def test_tiny_detector_training_run_exports_a_working_onnx(tmp_path, group_photo):
    from training import train_detector

    run = tmp_path / "run"
    config = train_detector.main([
        "--limit", "6", "--epochs", "1", "--crops-per-epoch", "0", "--size", "256", "--batch-size", "3",
        "--threads", "1", "--workers", "0", "--split-file", str(tmp_path / "split.json"),
        "--cache", str(tmp_path / "teacher.json"), "--out", str(run)])
    split = json.loads((tmp_path / "split.json").read_text())
    assert not set(split["train"]) & set(split["test"]) and split["seed"] == 42
    for name in ("detector.onnx", "history.csv", "training_curve.png", "train_config.json"):
        assert (run / name).is_file(), name
    assert config["train_scenes"] == 6 and config["cpu_seconds"] > 0
    assert 0.0 <= config["best"]["valid_all"] <= 1.0
    faces = RetinaFaceDetector(model=run / "detector.onnx").detect(group_photo)
    assert len(faces) >= 3  # one epoch at a low learning rate keeps the stock detector's ability


@needs_scenes
@needs_real_photos
def test_real_photos_join_training_and_epoch_selection(tmp_path):
    from training import train_detector

    config = train_detector.main([
        "--limit", "3", "--epochs", "1", "--crops-per-epoch", "0", "--size", "256", "--batch-size", "3",
        "--threads", "1", "--workers", "0", "--split-file", str(tmp_path / "split.json"),
        "--cache", str(tmp_path / "teacher.json"), "--real-photos", str(REAL_PHOTOS),
        "--real-photos-cache", str(tmp_path / "teacher_real.json"), "--out", str(tmp_path / "run")])
    assert config["real_photos_train"] == config["real_photos_valid"] == 3
    assert config["scene_samples_per_epoch"] == config["train_scenes"] == 3, "real photos are counted apart"
    best = config["best"]
    assert 0.0 <= best["valid_real_ap"] <= 1.0 and 0.0 <= best["valid_real_all"] <= 1.0
    assert best["selection"] == pytest.approx((best["valid_ap"] + best["valid_real_ap"]) / 2)
    cached = json.loads((tmp_path / "teacher_real.json").read_text())
    assert len(cached) == 3 and all(isinstance(heads, list) for heads in cached.values())
