"""The public API behind `facemask.load()`: detect faces, classify them, draw them, in a few lines.

    import facemask
    masks = facemask.load()                       # the shipped models, in this process
    faces = masks.classify("photo.jpg")          # a Faces: boxes, landmarks, det_score, label, score, ...
    annotated, faces = masks.annotate(photo_rgb) # the picture with its boxes and tags drawn, and the faces

docs/api.md has the example a test runs.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from facemask.core.classifier import LocalClassifier, MaskClassifier
from facemask.core.crops import crop_face
from facemask.core.detector import DEFAULT_LONG_SIDE, DEFAULT_SCORE_THRESHOLD, create_detector
from facemask.core.drawing import draw_faces
from facemask.core.images import decode_image
from facemask.core.pipeline import ClassifierClient, MaskPipeline
from facemask.core.protocols import Classifier, Detector
from facemask.core.results import Face, Faces
from facemask.core.settings import Settings

Image = np.ndarray | bytes | str | Path  # an RGB uint8 array, or an image file's bytes or path (EXIF-rotated)


def _rgb(image: Image) -> np.ndarray:
    return image if isinstance(image, np.ndarray) else decode_image(image)


class FaceMask:
    """A detector and a classifier (any that follow facemask.core.protocols), ready for photo after photo."""

    def __init__(self, detector: Detector, classifier: Classifier):
        self.pipeline = MaskPipeline(detector, classifier)
        self.detector, self.classifier = detector, classifier

    @classmethod
    def load(cls, classifier_url: str | None = None, *, detector: str | Path | None = None,
             threshold: float | None = None, settings: Settings | None = None) -> "FaceMask":
        """The shipped detector and classifier (or settings.detector_model / classifier_model), classifying in this
        process with ONNX Runtime; classifier_url: the classification service over HTTP instead, as the command
        line does by default. Photos are searched as the command line searches them (the 'auto' pyramid)."""
        settings = settings or Settings()
        found = create_detector(detector or settings.detector_model, settings.ort_threads).prepare(
            score_threshold=DEFAULT_SCORE_THRESHOLD if threshold is None else threshold, long_side=DEFAULT_LONG_SIDE)
        classifier: Classifier = ClassifierClient(classifier_url, deadline=settings.classify_deadline_s) \
            if classifier_url else LocalClassifier(MaskClassifier(settings.classifier_model, settings.ort_threads,
                                                                  served_crops=False))
        return cls(found, classifier)

    def detect(self, image: Image) -> Faces:
        """Every face the detector finds, in reading order as classify() gives them, not classified yet (label and
        status "unclassified")."""
        return Faces.from_detections(self.pipeline.detect(_rgb(image)))

    def classify(self, image: Image, faces: Faces | None = None) -> Faces:
        """The faces of the image with their classes: found by the detector (exactly what the command line and the
        detection service report), or the given faces (e.g. detect()'s, filtered), cropped where they are."""
        rgb = _rgb(image)
        if faces is None:
            return self.pipeline.process(rgb).faces
        detections = [Face(np.asarray(face.box, dtype=np.float32), np.asarray(face.landmarks, dtype=np.float32),
                           face.det_score) for face in faces]
        geometry, unavailable = self.pipeline.classifier.geometry()  # a classifier not answering: faces unclassified
        crops = [crop_face(rgb, face.landmarks, face.box, geometry) for face in detections]
        return Faces.from_detections(detections, self.pipeline.classifier.classify(crops, unavailable).predictions)

    def annotate(self, image: Image) -> tuple[np.ndarray, Faces]:
        """A copy of the picture with every face's box and tag drawn, and its classified faces."""
        rgb = _rgb(image)
        faces = self.classify(rgb)
        return draw_faces(rgb, faces), faces
