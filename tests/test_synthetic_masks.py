"""Synthetic masks drawn on real faces: placed by the landmarks, covering what each class says, split-safe."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from facemask.core.classes import INCORRECT, WITH_MASK, WITHOUT_MASK
from facemask.core.detector import RetinaFaceDetector
from facemask.core.images import decode_image
from tests.conftest import REPO_ROOT, SAMPLES
from training.synthetic_masks import KIND_LABEL, draw_mask


@pytest.fixture(scope="module")
def photo_and_faces():
    photo = decode_image(SAMPLES / "group_unmasked.jpg")
    return photo, RetinaFaceDetector().prepare(long_side=1280).detect(photo)


def changed(before, after, point, radius: int = 2) -> bool:
    x, y = (int(round(v)) for v in point)
    patch = (slice(y - radius, y + radius + 1), slice(x - radius, x + radius + 1))
    return np.abs(before[patch].astype(int) - after[patch].astype(int)).mean() > 8


@pytest.mark.parametrize("kind, covers_nose, covers_mouth", [
    ("worn", True, True), ("below_nose", False, True), ("on_chin", False, False), ("hand", None, True)])
def test_each_kind_covers_what_its_label_says(photo_and_faces, kind, covers_nose, covers_mouth):
    photo, faces = photo_and_faces
    rng = np.random.default_rng(0)
    for face in faces:
        drawn = draw_mask(photo, face.landmarks, kind, rng)
        eyes, nose = face.landmarks[:2], face.landmarks[2]
        mouth = face.landmarks[3:].mean(axis=0)
        chin = mouth + (mouth - eyes.mean(axis=0)) * 0.55
        assert not any(changed(photo, drawn, eye) for eye in eyes), f"{kind}: an eye was painted over"
        if covers_nose is not None:  # a hand over the mouth may cover the nose too
            assert changed(photo, drawn, nose) == covers_nose, f"{kind}: nose"
        assert changed(photo, drawn, mouth) == covers_mouth, f"{kind}: mouth"
        if kind != "hand":
            assert changed(photo, drawn, chin), f"{kind}: a mask always reaches the chin"
        # Nothing far from the face is touched.
        x1, y1, x2, y2 = face.box
        width = x2 - x1
        outside = np.ones(photo.shape[:2], bool)
        outside[max(0, int(y1 - width)):int(y2 + width), max(0, int(x1 - width)):int(x2 + width)] = False
        assert np.array_equal(drawn[outside], photo[outside])


def test_kinds_map_to_the_three_classes():
    assert KIND_LABEL == {"worn": WITH_MASK, "below_nose": INCORRECT, "on_chin": INCORRECT, "hand": WITHOUT_MASK}


def test_masks_vary_and_input_is_untouched(photo_and_faces):
    photo, faces = photo_and_faces
    original = photo.copy()
    rng = np.random.default_rng(1)
    mouths = [tuple(draw_mask(photo, faces[0].landmarks, "worn", rng)[
        tuple(np.round(faces[0].landmarks[3:].mean(axis=0)[::-1]).astype(int))]) for _ in range(6)]
    assert len(set(mouths)) >= 4, "six masks, (almost) six colours"
    assert np.array_equal(photo, original)


@pytest.mark.slow
def test_prepare_synthetic_faces_keep_their_source_split_and_add_the_incorrect_class(tmp_path):
    from training import prepare

    dataset = REPO_ROOT / ".." / "shared" / "datasets" / "face-mask-chandrikadeb7"
    if not dataset.is_dir():
        pytest.skip(f"dataset not found at {dataset}")
    report = prepare.main(["--data", str(dataset), "--out", str(tmp_path), "--limit", "12", "--synthetic", "2"])
    assert report["classes"] == [INCORRECT, WITH_MASK, WITHOUT_MASK]
    rows = list(csv.DictReader(open(tmp_path / "manifest.csv")))
    sources = {r["source"]: r for r in rows if r["status"] == "ok" and r["dataset"] == dataset.name}
    synthetic = [r for r in rows if r["dataset"] == "synthetic_masks"]
    unmasked = [r for r in sources.values() if r["label"] == WITHOUT_MASK]
    assert len(synthetic) == 2 * len(unmasked) > 0
    for row in synthetic:
        source = sources[row["source"].split("~")[0]]
        assert source["label"] == WITHOUT_MASK
        assert (row["split"], row["group"]) == (source["split"], source["group"])
        assert decode_image(tmp_path / row["crop"]).shape == (96, 96, 3)
        assert row["crop"].startswith(f"crops/{row['label']}/") and len(json.loads(row["landmarks"])) == 5
