"""Mask classifier on ONNX Runtime: crops in, class probabilities out. No torch needed."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from facemask import crops
from facemask.errors import ModelError, ModelNotFoundError
from facemask.paths import CLASSIFIER_MODEL
from facemask.results import Classification
from facemask.sessions import CPU_ONLY, load_session, session_providers
from facemask.settings import Settings

DEFAULT_MODEL = CLASSIFIER_MODEL
MAX_BATCH = 64  # larger requests are run in chunks: flat memory, same throughput on a CPU


class ModelMismatchError(ModelError, RuntimeError):
    """The model was trained with a different crop context or normalisation than facemask.crops serves."""


class MaskClassifier:
    def __init__(self, model_path: str | Path | None = None, num_threads: int | None = None,
                 served_crops: bool = True, providers: tuple[str, ...] = CPU_ONLY):
        """model_path: None for the shipped model; num_threads: ONNX Runtime threads (None: its choice);
        served_crops: the crops will be cut by facemask.crops.crop_face as served (False: the caller reframes them
        to `geometry`, as a crop-geometry sweep does); providers: FACEMASK_ORT_PROVIDERS' words."""
        self.model_path = Path(model_path or DEFAULT_MODEL)
        if not self.model_path.is_file():
            raise ModelNotFoundError(f"classifier model not found: {self.model_path}")
        self.session = load_session(str(self.model_path), str(self.model_path), num_threads, what="classifier model",
                                    providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.classes: list[str] = json.loads(metadata["classes"])
        self.crop_size = int(metadata["crop_size"])
        self.face_fraction = float(metadata.get("face_fraction", crops.LEGACY_FACE_FRACTION))
        self.geometry = crops.CropGeometry(self.crop_size, self.face_fraction)
        self.model_version = metadata.get("model_version", self.model_path.stem)
        self.arch = metadata.get("arch", "unknown")
        self._check_preprocessing(metadata, served_crops)

    @classmethod
    def from_settings(cls, settings: Settings) -> "MaskClassifier":
        """The service's classifier: its clients cut crops at the geometry /info gives (ClassifierClient), so a
        model trained at another face fraction, an older one included, is served as it is."""
        return cls(settings.classifier_model, settings.ort_threads, served_crops=False,
                   providers=settings.ort_providers)

    def _check_preprocessing(self, metadata: dict, served_crops: bool) -> None:
        """The input side may differ from the served crop's (predict resizes); the normalisation may not, nor, for
        served crops, the face's share of the crop."""
        trained = (tuple(json.loads(metadata["mean"])), tuple(json.loads(metadata["std"])))
        served = (tuple(crops.MEAN), tuple(crops.STD))
        if not np.allclose(np.array(trained), np.array(served)):
            raise ModelMismatchError(f"model expects mean/std {trained}, serving code provides {served}")
        if served_crops and abs(self.face_fraction - crops.SERVED.face_fraction) > 1e-3:
            raise ModelMismatchError(f"model expects crops at face fraction {self.face_fraction}, serving code cuts "
                                     f"{crops.SERVED.face_fraction}")

    def info(self) -> dict:
        return {"model_version": self.model_version, "arch": self.arch, "classes": self.classes,
                "input_size": [self.crop_size, self.crop_size],
                "face_fraction": self.face_fraction, "mean": list(crops.MEAN), "std": list(crops.STD),
                "model_file": self.model_path.name, "model_bytes": self.model_path.stat().st_size,
                "providers": session_providers(self.session)}

    def predict(self, crops_rgb: list[np.ndarray]) -> np.ndarray:
        """(N, num_classes) probabilities for RGB uint8 crops of any size (resized to the model input)."""
        if not crops_rgb:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        outputs = []
        for start in range(0, len(crops_rgb), MAX_BATCH):
            batch = crops.to_model_input(crops_rgb[start:start + MAX_BATCH], self.crop_size)
            outputs.append(self.session.run(None, {self.input_name: batch})[0])
        return np.concatenate(outputs)

    def describe(self, probabilities: np.ndarray) -> list[Classification]:
        """Label, score and all class probabilities per row of predict()'s output."""
        return [Classification.from_probabilities(dict(zip(self.classes, row))) for row in probabilities]
