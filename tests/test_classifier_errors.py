"""bench.classifier_errors on a small real prepared folder (crop set, scenes, ILC photos): every crop lands in one row
of each breakdown, the errors are the model's real mistakes, reviews are counted, and ILC crops never reach a sheet
unless asked for."""
from __future__ import annotations

import json

import numpy as np
import pytest

from facemask.core.classifier import DEFAULT_MODEL
from facemask.core.paths import CROPS_DIR, REAL_PHOTOS_DIR, SCENES_DIR

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not (CROPS_DIR.is_dir() and SCENES_DIR.is_dir() and REAL_PHOTOS_DIR.is_dir()), reason="datasets not found")]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from training import prepare

    out = tmp_path_factory.mktemp("prepared")
    prepare.main(["--data", str(CROPS_DIR), "--scenes", str(SCENES_DIR), str(REAL_PHOTOS_DIR), "--limit", "12",
                  "--out", str(out), "--seed", "3"])
    return out


def test_errors_by_class_size_and_review(prepared, tmp_path):
    from bench import classifier_errors
    from training.validate import predict_split

    classifier, frame, _, probabilities = predict_split(DEFAULT_MODEL, prepared, "train")
    report = classifier_errors.main(["--prepared", str(prepared), "--split", "train", "--out-dir", str(tmp_path)])
    by_class = report.tables["By data set and true class"]
    assert sum(row["faces"] for row in by_class) == len(frame)
    real = frame["dataset"].isin(classifier_errors.REAL_PHOTOS).to_numpy()
    sizes = report.tables["Real photos by true class and face width (detector box, source pixels)"]
    assert sum(row["faces"] for row in sizes) == real.sum()
    guesses = np.array(classifier.classes)[probabilities.argmax(1)]
    wrong = real & (guesses != frame["label"].to_numpy())
    errors = report.data["errors"]
    assert len(errors) == wrong.sum() > 0, "the shipped model makes a few mistakes on real photos"
    assert sorted(e["crop"] for e in errors) == sorted(frame["crop"][wrong])
    assert [e["probability"] for e in errors] == sorted((e["probability"] for e in errors), reverse=True)
    assert (tmp_path / "classifier_errors_real_photos.png").stat().st_size > 10_000

    review = tmp_path / "review.json"
    review.write_text(json.dumps({errors[0]["crop"]: "label wrong"}))
    report = classifier_errors.main(["--prepared", str(prepared), "--split", "train", "--out-dir", str(tmp_path),
                                     "--review", str(review)])
    verdicts = {row["verdict"]: row["errors"] for row in
                report.tables["Real-photo errors by annotation noise (a person's review of each crop)"]}
    assert verdicts == {"label wrong": 1, "unclear": 0, "model wrong": 0, "not reviewed": len(errors) - 1}

    review.write_text(json.dumps({errors[0]["crop"]: "wrong-ish"}))
    with pytest.raises(SystemExit):
        classifier_errors.main(["--prepared", str(prepared), "--split", "train", "--out-dir", str(tmp_path),
                                "--review", str(review)])


def test_ilc_crops_stay_off_the_sheet_unless_asked(monkeypatch, prepared, tmp_path):
    from bench import classifier_errors

    shown = []
    monkeypatch.setattr(classifier_errors, "error_sheet", lambda items, *rest: shown.append(items))
    classifier_errors.main(["--prepared", str(prepared), "--split", "train", "--out-dir", str(tmp_path)])
    classifier_errors.main(["--prepared", str(prepared), "--split", "train", "--out-dir", str(tmp_path), "--show-all"])
    committed, local = shown
    ilc = [i for i, item in enumerate(committed) if item["source"] == "ilc-2021"]
    assert ilc, "the folder holds ILC errors"
    assert all(committed[i]["crop"] is None for i in ilc) and all(local[i]["crop"] is not None for i in ilc)
    assert all(item["crop"] is not None for item in committed if item["source"] != "ilc-2021")


def test_fold_models_pooled_score_every_train_and_valid_crop_once(prepared, tmp_path):
    """--folds: each fold model scores only the fold it did not see, and together they score every train and valid
    crop exactly once (the shipped model stands in for both fold models, so its predictions are known)."""
    import shutil

    from bench import classifier_errors
    from training.data import read_manifest
    from training.validate import predict_split

    runs = tmp_path / "cv"
    runs.mkdir()
    for fold in (0, 1):
        shutil.copy(DEFAULT_MODEL, runs / f"shipped__fold{fold}of2.onnx")
    shutil.copy(DEFAULT_MODEL, runs / "other__fold0of2.onnx")
    report = classifier_errors.main(["--prepared", str(prepared), "--folds", str(runs), "--candidate", "shipped",
                                     "--out-dir", str(tmp_path), "--name", "pooled"])
    manifest = read_manifest(prepared)
    pooled = manifest[manifest["split"].isin(["train", "valid"])]
    by_class = report.tables["By data set and true class"]
    assert sum(row["faces"] for row in by_class) == len(pooled)

    errors = []
    for split in ("train", "valid"):
        classifier, frame, _, probabilities = predict_split(DEFAULT_MODEL, prepared, split)
        real = frame["dataset"].isin(classifier_errors.REAL_PHOTOS).to_numpy()
        wrong = real & (np.array(classifier.classes)[probabilities.argmax(1)] != frame["label"].to_numpy())
        errors += list(frame["crop"][wrong])
    assert sorted(e["crop"] for e in report.data["errors"]) == sorted(errors)
    assert "held-out folds of shipped" in report.title

    with pytest.raises(SystemExit, match="no missing__fold"):
        classifier_errors.main(["--prepared", str(prepared), "--folds", str(runs), "--candidate", "missing",
                                "--out-dir", str(tmp_path)])
