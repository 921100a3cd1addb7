"""Timing hooks: a detector or classifier wrapped so that each call's duration goes to a callback (a service's
stage histogram, a benchmark's tally), in place of a subclass that overrides the call."""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from facemask.core.crops import CropGeometry
from facemask.core.protocols import Classifier, Detector
from facemask.core.results import Face, Prediction

# observe(stage, milliseconds): stage is "detect" or "classify"
Observer = Callable[[str, float], None]


class TimedDetector:
    """A Detector whose every detect() is reported to observe("detect", ms)."""

    def __init__(self, detector: Detector, observe: Observer):
        self.detector, self.observe = detector, observe

    def detect(self, image_rgb: np.ndarray) -> list[Face]:
        started = time.perf_counter()
        try:
            return self.detector.detect(image_rgb)
        finally:
            self.observe("detect", (time.perf_counter() - started) * 1e3)

    def config(self) -> dict:
        return self.detector.config()


class TimedClassifier:
    """A Classifier whose every classify() of at least one crop is reported to observe("classify", ms)."""

    def __init__(self, classifier: Classifier, observe: Observer):
        self.classifier, self.observe = classifier, observe

    @property
    def url(self) -> str:
        return self.classifier.url

    def classify(self, crops: list[np.ndarray]) -> list[Prediction]:
        started = time.perf_counter()
        try:
            return self.classifier.classify(crops)
        finally:
            if crops:
                self.observe("classify", (time.perf_counter() - started) * 1e3)

    def crop_geometry(self) -> CropGeometry:
        return self.classifier.crop_geometry()

    def is_ready(self) -> bool:
        return self.classifier.is_ready()
