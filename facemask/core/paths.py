"""Every path the repository's parts share, defined once: models, the scene split, datasets, results.

The models are package data of `classification` and `detection`, which sit next to `facemask` both in a checkout and,
once installed, in site-packages: they are found from this file, never from the working directory. The datasets and
the benchmark results belong to a checkout (training/ and bench/ are not installed).
"""
from __future__ import annotations

from pathlib import Path

# The folder holding facemask/ (this file: facemask/core/paths.py), classification/ and detection/: the checkout,
# or site-packages when installed.
PACKAGES_ROOT = Path(__file__).resolve().parents[2]
REPO_ROOT = PACKAGES_ROOT  # what the checkout's scripts and tests call it; only a checkout has bench/, tests/, ...
CLASSIFIER_MODEL = PACKAGES_ROOT / "classification" / "model" / "mask_classifier.onnx"
# The served classifier is int8 (issue 32); its float32 source stays in the checkout, outside the wheel: the start for
# fine-tuning, torch teachers (onnx2torch converts no QuantizeLinear) and FP16 (an int8 graph has no float16 form).
CLASSIFIER_FLOAT32_MODEL = PACKAGES_ROOT / "classification" / "model" / "float32" / "mask_classifier.onnx"
DETECTOR_MODEL = PACKAGES_ROOT / "detection" / "model" / "retinaface_mnet025_masks.onnx"  # fine-tuned RetinaFace
CENTERFACE_MODEL = PACKAGES_ROOT / "detection" / "model" / "centerface_masks.onnx"  # fine-tuned CenterFace
# The annotated scene photos split by photo (train / valid / test), written by training.train_detector and read by
# classifier training and the benchmarks, so held-out photos stay unseen by both models.
SCENE_SPLIT_FILE = PACKAGES_ROOT / "detection" / "model" / "scene_split.json"
# The real web photos (ILC 2021) split by photo the same way (training.prepare and the benchmarks read it).
REAL_PHOTOS_SPLIT_FILE = PACKAGES_ROOT / "detection" / "model" / "ilc_split.json"
# Read-only datasets, outside the repository. Training and the benchmarks take them from Settings.datasets_dir
# (FACEMASK_DATASETS_DIR), whose default is this folder next to the checkout.
DATASETS_DIR = REPO_ROOT / ".." / "shared" / "datasets"
CROPS_FOLDER, SCENES_FOLDER = "face-mask-chandrikadeb7", "face-mask-scenes-andrewmvd"
REAL_PHOTOS_FOLDER = "face-mask-ilc-2021"
CROPS_DIR = DATASETS_DIR / CROPS_FOLDER  # the defaults; Settings.crops_dir / scenes_dir follow the setting
SCENES_DIR = DATASETS_DIR / SCENES_FOLDER
REAL_PHOTOS_DIR = DATASETS_DIR / REAL_PHOTOS_FOLDER
RESULTS_DIR = REPO_ROOT / "bench" / "results"  # the benchmarks' default --out-dir
