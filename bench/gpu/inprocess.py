"""Detector and classifier in one process, no HTTP between them (MaskPipeline with a LocalClassifier): what a GPU
server runs per photo, and what the GPU measurements time and score, both models on the same providers."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facemask.core.classifier import LocalClassifier, MaskClassifier
from facemask.core.detector import PyramidFaceDetector, create_detector
from facemask.core.paths import CLASSIFIER_MODEL, DETECTOR_MODEL
from facemask.core.pipeline import MaskPipeline
from facemask.core.results import FrameResult


@dataclass
class Models:
    detector: PyramidFaceDetector
    classifier: MaskClassifier
    name: str  # e.g. "CUDA FP16"

    @classmethod
    def load(cls, providers: tuple[str, ...], name: str, detector_model=DETECTOR_MODEL,
             classifier_model=CLASSIFIER_MODEL) -> "Models":
        return cls(create_detector(str(detector_model), providers=providers),
                   MaskClassifier(classifier_model, served_crops=False, providers=providers), name)

    @property
    def pipeline(self) -> MaskPipeline:
        return MaskPipeline(self.detector, LocalClassifier(self.classifier))

    def annotate(self, image_rgb: np.ndarray) -> FrameResult:
        """One photo's faces, each with its label, and the ms its detection and classification took."""
        return self.pipeline.process(image_rgb)
