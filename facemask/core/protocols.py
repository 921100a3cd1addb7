"""What the pipeline needs of a detector and of a classifier, whichever runs it: a service over HTTP
(`ClassifierClient`), ONNX Runtime in this process (`LocalClassifier`, the detectors), or a wrapper that times either
(`facemask.core.timing`). Anything with these methods fits; nothing has to subclass anything."""
from __future__ import annotations

from typing import Protocol

import numpy as np

from facemask.core.crops import CropGeometry
from facemask.core.results import Face, Prediction


class Detector(Protocol):
    """Faces in an RGB image, in its own pixels."""

    def detect(self, image_rgb: np.ndarray) -> list[Face]: ...

    def config(self) -> dict:
        """What the JSON records as "detector": the model and the options it runs with."""
        ...


class Classifier(Protocol):
    """Mask classes of face crops, one prediction per crop, in order; crops are cut at crop_geometry()."""

    @property
    def url(self) -> str:
        """Where it runs, as the JSON's "classifier_url" records it: the service's URL(s), or local:<model file>."""
        ...

    def classify(self, crops: list[np.ndarray]) -> list[Prediction]: ...

    def crop_geometry(self) -> CropGeometry: ...

    def is_ready(self) -> bool: ...
