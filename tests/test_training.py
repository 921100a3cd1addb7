"""The training pipeline end to end on a small real subset: prepare -> train -> export -> serve -> validate."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facemask.core.classifier import MaskClassifier
from facemask.core.images import decode_image
from tests.conftest import REPO_ROOT

DATASET = REPO_ROOT / ".." / "shared" / "datasets" / "face-mask-chandrikadeb7"
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not DATASET.is_dir(), reason=f"dataset not found at {DATASET}")]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    from training import prepare

    out = tmp_path_factory.mktemp("prepared")
    report = prepare.main(["--data", str(DATASET), "--out", str(out), "--limit", "40", "--seed", "1"])
    assert report["images"] == 80
    return out


def test_prepare_writes_crops_manifest_and_a_group_aware_split(prepared):
    rows = list(csv.DictReader(open(prepared / "manifest.csv")))
    used = [r for r in rows if r["status"] == "ok"]
    assert len(used) >= 70  # almost every image of the subset has one clear face
    for row in used:
        crop = decode_image(prepared / row["crop"])
        assert crop.shape == (96, 96, 3)
        assert len(json.loads(row["landmarks"])) == 5 and row["split"] in ("train", "valid", "test")
    groups = {}
    for row in used:
        groups.setdefault(row["group"], set()).add(row["split"])
    assert all(len(splits) == 1 for splits in groups.values()), "a near-duplicate group straddles splits"
    for label in ("with_mask", "without_mask"):
        assert {r["split"] for r in used if r["label"] == label} == {"train", "valid", "test"}
    skipped = [r for r in rows if r["status"] != "ok"]
    assert all(r["status"].split(":")[0] in ("no_face", "ambiguous_faces", "exact_duplicate_of", "unreadable")
               for r in skipped)


def test_train_export_and_serve_a_tiny_model(prepared, tmp_path):
    from training import train, validate

    run = tmp_path / "run"
    train.main(["--prepared", str(prepared), "--epochs", "10", "--lr", "2e-3", "--batch-size", "16",
                "--no-augment", "--out", str(run)])
    for name in ("model.onnx", "model.pkl", "history.csv", "training_curve.png", "train_config.json"):
        assert (run / name).is_file(), name

    classifier = MaskClassifier(run / "model.onnx")  # the serving wrapper, not torch
    assert classifier.classes == ["with_mask", "without_mask"]
    rows = [r for r in csv.DictReader(open(prepared / "manifest.csv")) if r["split"] == "train"]
    probabilities = classifier.predict([decode_image(prepared / r["crop"]) for r in rows])
    accuracy = sum(classifier.classes[p.argmax()] == r["label"] for p, r in zip(probabilities, rows)) / len(rows)
    assert accuracy > 0.6, f"training-set accuracy {accuracy:.2f} is no better than chance"

    metrics = validate.main(["--run", str(run), "--prepared", str(prepared)])
    assert 0 <= metrics["accuracy"] <= 1 and metrics["images"] > 0
    for name in ("MODEL_CARD.md", "model_card.json", "confusion_matrix.png", "worst_errors.png"):
        assert (run / name).is_file(), name
    card = json.loads((run / "model_card.json").read_text())
    assert card["test_metrics"]["accuracy"] == metrics["accuracy"] and card["file_bytes"] > 0


def test_a_wide_prepared_folder_trains_and_evaluates_a_narrower_crop_geometry(tmp_path):
    import onnx

    from facemask.core.classifier import ModelMismatchError
    from facemask.core.crops import CropGeometry
    from training import prepare, sweep

    wide = tmp_path / "wide"
    report = prepare.main(["--data", str(DATASET), "--out", str(wide), "--limit", "20", "--seed", "1",
                           "--crop-size", "112", "--face-fraction", "0.65"])
    assert report["crop_geometry"] == {"size": 112, "face_fraction": 0.65}
    used = [r for r in csv.DictReader(open(wide / "manifest.csv")) if r["status"] == "ok"]
    assert decode_image(wide / used[0]["crop"]).shape == (112, 112, 3)

    config = sweep.SweepConfig(crop_size=64, face_fraction=0.70)
    rows = sweep.main(["--prepared", str(wide), "--out", str(tmp_path / "sweep"), "--epochs", "1",
                       "--only", config.name])
    assert [row["name"] for row in rows] == [config.name] and rows[0]["valid_log_loss"] > 0, rows
    assert (tmp_path / "sweep" / "sweep.md").is_file()
    model = Path(rows[0]["model"])
    metadata = {p.key: p.value for p in onnx.load(str(model)).metadata_props}
    assert (metadata["crop_size"], float(metadata["face_fraction"])) == ("64", 0.70)
    with pytest.raises(ModelMismatchError):  # served crops hold another share of face: refused, not misread
        MaskClassifier(model)
    assert MaskClassifier(model, served_crops=False).geometry == CropGeometry(64, 0.70)


def test_prepare_adds_scene_faces_split_by_photo(tmp_path):
    from training import prepare

    scenes = REPO_ROOT / ".." / "shared" / "datasets" / "face-mask-scenes-andrewmvd"
    if not scenes.is_dir():
        pytest.skip(f"scenes not found at {scenes}")
    out = tmp_path / "prepared"
    report = prepare.main(["--data", str(DATASET), "--out", str(out), "--limit", "6", "--scenes", str(scenes)])
    rows = [r for r in csv.DictReader(open(out / "manifest.csv")) if r["dataset"] == scenes.name]
    assert rows and report["used_per_dataset"].get(scenes.name, 0) > 0
    by_photo = {}
    for row in rows:
        by_photo.setdefault(row["group"], set()).add(row["split"])
        if row["status"] == "ok":
            assert decode_image(out / row["crop"]).shape == (96, 96, 3) and len(json.loads(row["landmarks"])) == 5
        else:
            assert row["status"] in ("no_face", "label_not_in_classes") and not row["crop"]
    assert all(len(splits) == 1 for splits in by_photo.values()), "faces of one photo straddle splits"


def test_prepare_crops_the_real_photo_set_with_its_committed_split_and_three_classes(tmp_path):
    from facemask.core.paths import REAL_PHOTOS_DIR, REAL_PHOTOS_SPLIT_FILE
    from training import prepare

    if not REAL_PHOTOS_DIR.is_dir():
        pytest.skip(f"real photos not found at {REAL_PHOTOS_DIR}")
    out = tmp_path / "prepared"
    report = prepare.main(["--data", str(DATASET), "--out", str(out), "--limit", "12", "--scenes",
                           str(REAL_PHOTOS_DIR), "--synthetic", "1"])
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    real = [r for r in rows if r["dataset"] == REAL_PHOTOS_DIR.name]
    committed = {name: split for split, names in json.loads(REAL_PHOTOS_SPLIT_FILE.read_text()).items()
                 if split in ("train", "valid", "test") for name in names}
    assert real and report["used_per_dataset"].get(REAL_PHOTOS_DIR.name, 0) > 0
    for row in real:
        assert row["split"] == committed[row["group"].removeprefix("scene:")]
        assert row["label"] in ("with_mask", "without_mask", "incorrect")  # with_incorrect_mask is `incorrect`
    # Every drawn face has its own crop: faces of one photo used to overwrite each other's file.
    drawn = [r["crop"] for r in rows if r["dataset"] == "synthetic_masks" and r["status"] == "ok"]
    assert drawn and len(set(drawn)) == len(drawn)
    assert all((out / crop).is_file() for crop in drawn)


def test_training_can_leave_a_data_set_out(tmp_path):
    from training.data import make_dataloaders

    prepared = tmp_path / "prepared"
    (prepared / "crops").mkdir(parents=True)
    crop = np.full((96, 96, 3), 128, np.uint8)
    rows = []
    for index, (dataset, split, label) in enumerate([("a", "train", "with_mask"), ("a", "valid", "without_mask"),
                                                     ("b", "train", "without_mask"), ("b", "valid", "with_mask"),
                                                     ("a", "train", "without_mask"), ("a", "valid", "with_mask")]):
        Image.fromarray(crop).save(prepared / "crops" / f"{index}.png")
        rows.append({"status": "ok", "crop": f"crops/{index}.png", "label": label, "split": split,
                     "dataset": dataset})
    pd.DataFrame(rows).to_csv(prepared / "manifest.csv", index=False)
    (prepared / "report.json").write_text(json.dumps({"crop_geometry": {"size": 96, "face_fraction": 0.90}}))
    dls = make_dataloaders(prepared, batch_size=2, exclude_datasets=("b",))
    assert len(dls.train_ds) == 2 and len(dls.valid_ds) == 2
    with pytest.raises(ValueError, match="no data set named"):
        make_dataloaders(prepared, exclude_datasets=("synthetic",))


def test_two_class_accuracy_counts_a_mask_worn_wrong_as_a_mask_on_two_label_data():
    from training.validate import two_class_accuracy

    labels = ["with_mask", "with_mask", "without_mask", "without_mask"]
    # `incorrect` on a two-label `with_mask` photo is a mask; on a `without_mask` photo it is an error.
    assert two_class_accuracy(labels, ["incorrect", "with_mask", "incorrect", "without_mask"]) == 0.75
    assert two_class_accuracy(["incorrect", "with_mask"], ["incorrect", "with_mask"]) is None


def test_a_folder_prepared_before_the_geometry_option_reads_as_the_legacy_crop(tmp_path):
    from facemask.core.crops import CropGeometry
    from training.data import prepared_geometry

    (tmp_path / "report.json").write_text(json.dumps({"data": "face-mask-chandrikadeb7"}))
    assert prepared_geometry(tmp_path) == CropGeometry(96, 0.78)


def test_distillation_pulls_the_training_loss_towards_the_teachers_and_leaves_validation_alone():
    from types import SimpleNamespace

    import torch

    from facemask.core import crops
    from facemask.core.paths import CLASSIFIER_FLOAT32_MODEL  # teachers on torch: onnx2torch converts no int8
    from training.distill import DistillationCallback

    teacher = MaskClassifier(CLASSIFIER_FLOAT32_MODEL)
    faces = [decode_image(path) for path in sorted((REPO_ROOT / "sample-images").glob("*.jpg"))[:2]]
    batch = torch.from_numpy(crops.to_model_input([face[:120, :120] for face in faces], teacher.crop_size))
    student_classes = list(reversed(teacher.classes))  # another order than the teacher's
    callback = DistillationCallback([CLASSIFIER_FLOAT32_MODEL], student_classes, crops.SERVED, alpha=0.5,
                                    temperature=2.0)
    expected = torch.from_numpy(teacher.session.run(None, {teacher.input_name: batch.numpy()})[0][:, ::-1].copy())
    assert torch.allclose(callback.teacher_probabilities(batch), expected, atol=1e-5)
    on_torch = DistillationCallback([CLASSIFIER_FLOAT32_MODEL], student_classes, crops.SERVED, on_torch=True)
    assert torch.allclose(on_torch.teacher_probabilities(batch), expected, atol=1e-4)  # how a GPU run teaches

    hard = torch.tensor(0.8)
    agreeing = torch.log(expected)  # logits whose softmax is the teachers' answer: nothing left to match
    callback.learn = SimpleNamespace(training=True, xb=(batch,), pred=agreeing, loss_grad=hard.clone(), loss=None)
    callback.after_loss()
    assert callback.learn.loss_grad.item() == pytest.approx(0.4, abs=1e-4)
    callback.learn = SimpleNamespace(training=True, xb=(batch,), pred=-agreeing, loss_grad=hard.clone(), loss=None)
    callback.after_loss()
    assert callback.learn.loss_grad.item() > 0.5  # disagreeing with the teachers costs
    callback.learn = SimpleNamespace(training=False, xb=(batch,), pred=-agreeing, loss_grad=hard.clone(), loss=None)
    callback.after_loss()
    assert callback.learn.loss_grad.item() == pytest.approx(0.8)  # validation loss stays the plain one

    with pytest.raises(ValueError, match="does not know"):
        DistillationCallback([CLASSIFIER_FLOAT32_MODEL], ["with_mask", "beard"], crops.SERVED)
    with pytest.raises(ValueError, match="trained on"):
        DistillationCallback([CLASSIFIER_FLOAT32_MODEL], student_classes, crops.CropGeometry(64, 0.9))


def test_a_three_class_teacher_distils_into_a_two_class_student(prepared, tmp_path):
    from facemask.core.paths import CLASSIFIER_MODEL
    from training import train

    run = tmp_path / "run"
    train.main(["--prepared", str(prepared), "--epochs", "2", "--lr", "2e-3", "--batch-size", "16", "--no-augment",
                "--teacher", str(CLASSIFIER_MODEL), "--out", str(run)])
    config = json.loads((run / "train_config.json").read_text())
    assert config["teacher"] == [str(CLASSIFIER_MODEL)] and config["classes"] == ["with_mask", "without_mask"]
    assert MaskClassifier(run / "model.onnx").classes == ["with_mask", "without_mask"]


def test_mixup_trains_and_exports_and_refuses_to_combine_with_teachers(prepared, tmp_path):
    from facemask.core.paths import CLASSIFIER_MODEL
    from training import train

    run = tmp_path / "run"
    train.main(["--prepared", str(prepared), "--epochs", "1", "--lr", "2e-3", "--batch-size", "16", "--mixup", "0.4",
                "--out", str(run)])
    assert json.loads((run / "train_config.json").read_text())["mixup"] == 0.4
    assert MaskClassifier(run / "model.onnx").classes == ["with_mask", "without_mask"]
    with pytest.raises(SystemExit):
        train.main(["--prepared", str(prepared), "--epochs", "1", "--mixup", "0.4", "--teacher", str(CLASSIFIER_MODEL),
                    "--out", str(tmp_path / "both")])
