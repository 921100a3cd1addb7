"""Face-mask detection: find every face in a picture and tell whether it wears a mask, wears it wrong, or none.

    import facemask
    masks = facemask.load()
    for face in masks.classify("photo.jpg"):
        print(face.box, face.label, face.score)

`load()` returns a facemask.api.FaceMask (detect, classify, annotate); its results are facemask.core.results.Faces.
docs/api.md says more. Importing `facemask` alone loads nothing: the models load in `load()`.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from facemask.api import FaceMask
    from facemask.core.settings import Settings

__all__ = ["load"]


def load(classifier_url: str | None = None, *, detector: str | Path | None = None, threshold: float | None = None,
         settings: "Settings | None" = None) -> "FaceMask":
    """The shipped detector and mask classifier, classifying in this process (ONNX Runtime), or over HTTP at
    classifier_url (the classification service). detector: an ONNX file, 'stock' or 'centerface' instead of the
    shipped one; threshold: the detector's score threshold (default 0.5); settings: a facemask.core.settings.Settings
    (models, threads; default: the built-in defaults, not the environment: pass Settings.from_env() for those)."""
    from facemask.api import FaceMask

    return FaceMask.load(classifier_url, detector=detector, threshold=threshold, settings=settings)
