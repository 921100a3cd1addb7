"""Class names of the mask classifier, shared by training, serving, drawing and the benchmarks.

A model carries its own class list in its ONNX metadata (two-class models stay loadable); these are the names the
product knows how to draw, count and score.
"""
from __future__ import annotations

WITH_MASK = "with_mask"
WITHOUT_MASK = "without_mask"
INCORRECT = "incorrect"  # a mask worn below the nose or on the chin
CLASSES = (INCORRECT, WITH_MASK, WITHOUT_MASK)

# The annotated scenes (andrewmvd) name the third class differently.
SCENE_LABEL_TO_CLASS = {"mask_weared_incorrect": INCORRECT}


def canonical_label(label: str) -> str:
    """The product's name for a label of any data set."""
    return SCENE_LABEL_TO_CLASS.get(label, label)
