"""Every path the repository's parts share, defined once: models, the scene split, datasets, results."""
from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CLASSIFIER_MODEL = REPO_ROOT / "classification" / "model" / "mask_classifier.onnx"
DETECTOR_MODEL = REPO_ROOT / "detection" / "model" / "retinaface_mnet025_masks.onnx"  # fine-tuned RetinaFace
CENTERFACE_MODEL = REPO_ROOT / "detection" / "model" / "centerface_masks.onnx"  # fine-tuned CenterFace
# The annotated scene photos split by photo (train / valid / test), written by training.train_detector and read by
# classifier training and the benchmarks, so held-out photos stay unseen by both models.
SCENE_SPLIT_FILE = REPO_ROOT / "detection" / "model" / "scene_split.json"
# The real web photos (ILC 2021) split by photo the same way (training.prepare and the benchmarks read it).
REAL_PHOTOS_SPLIT_FILE = REPO_ROOT / "detection" / "model" / "ilc_split.json"
DATASETS_DIR = REPO_ROOT / ".." / "shared" / "datasets"  # read-only, outside the repository
CROPS_DIR = DATASETS_DIR / "face-mask-chandrikadeb7"
SCENES_DIR = DATASETS_DIR / "face-mask-scenes-andrewmvd"
REAL_PHOTOS_DIR = DATASETS_DIR / "face-mask-ilc-2021"
RESULTS_DIR = REPO_ROOT / "bench" / "results"
