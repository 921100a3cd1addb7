"""Detector and classifier in one process, no HTTP between them: what a GPU server runs per photo, and what the
GPU measurements time and score (both models on the same provider)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facemask.classifier import MaskClassifier
from facemask.crops import crop_face
from facemask.detector import PyramidFaceDetector, create_detector
from facemask.paths import CLASSIFIER_MODEL, DETECTOR_MODEL
from facemask.results import Face, FaceResult


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

    def classify(self, image_rgb: np.ndarray, faces: list[Face]) -> list[FaceResult]:
        crops = [crop_face(image_rgb, face.landmarks, face.box, self.classifier.geometry) for face in faces]
        predictions = self.classifier.describe(self.classifier.predict(crops))
        return [FaceResult.from_prediction(face.box, face.landmarks, face.det_score, prediction)
                for face, prediction in zip(faces, predictions)]

    def annotate(self, image_rgb: np.ndarray) -> list[FaceResult]:
        """The faces of one photo, each with its label."""
        return self.classify(image_rgb, self.detector.detect(image_rgb))
