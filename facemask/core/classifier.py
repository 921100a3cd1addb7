"""Mask classifier on ONNX Runtime: crops in, class probabilities out. No torch needed."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from facemask.core import crops
from facemask.core.errors import ModelError, ModelNotFoundError
from facemask.core.paths import CLASSIFIER_MODEL
from facemask.core.results import Classification, Prediction
from facemask.core.sessions import CPU_ONLY, load_session, session_providers
from facemask.core.settings import Settings

DEFAULT_MODEL = CLASSIFIER_MODEL
MAX_BATCH = 64  # larger requests are run in chunks: flat memory, same throughput on a CPU


class ModelMismatchError(ModelError, RuntimeError):
    """The model was trained with a different crop context or normalisation than facemask.core.crops serves."""


class MaskClassifier:
    def __init__(self, model_path: str | Path | None = None, num_threads: int | None = None,
                 served_crops: bool = True, providers: tuple[str, ...] = CPU_ONLY):
        """model_path: None for the shipped model; num_threads: ONNX Runtime threads (None: its choice);
        served_crops: the crops will be cut by facemask.core.crops.crop_face as served (False: the caller reframes them
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


class LocalClassifier:
    """The Classifier protocol in this process: a MaskClassifier on ONNX Runtime in place of the classification
    service, so one photo needs no server (`facemask annotate --local`, `facemask.load()`). Crops are cut at the
    model's own geometry and labelled exactly as the service labels them (MaskClassifier.describe)."""

    def __init__(self, model: MaskClassifier | None = None):
        self.model = model or MaskClassifier(served_crops=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> "LocalClassifier":
        return cls(MaskClassifier.from_settings(settings))

    @property
    def url(self) -> str:
        return f"local:{self.model.model_path}"

    def classify(self, crops_rgb: list[np.ndarray]) -> list[Prediction]:
        return list(self.model.describe(self.model.predict(crops_rgb)))

    def crop_geometry(self) -> crops.CropGeometry:
        return self.model.geometry

    def is_ready(self) -> bool:
        return True
