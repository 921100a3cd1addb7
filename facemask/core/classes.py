"""Class names of the mask classifier, shared by training, serving, drawing and the benchmarks.

A model carries its own class list in its ONNX metadata (two-class models stay loadable); these are the names the
product knows how to draw, count and score.
"""
from __future__ import annotations

WITH_MASK = "with_mask"
WITHOUT_MASK = "without_mask"
INCORRECT = "incorrect"  # a mask worn below the nose or on the chin
CLASSES = (INCORRECT, WITH_MASK, WITHOUT_MASK)

# The annotated photo sets name the third class differently: the scenes (andrewmvd) `mask_weared_incorrect`, the
# real web photos (ILC 2021) `with_incorrect_mask`. Both mean every way of wearing a mask wrong (below the nose, on
# the chin, hanging from an ear, on the forehead), which is this product's one `incorrect` class.
SCENE_LABEL_TO_CLASS = {"mask_weared_incorrect": INCORRECT, "with_incorrect_mask": INCORRECT}


def canonical_label(label: str) -> str:
    """The product's name for a label of any data set."""
    return SCENE_LABEL_TO_CLASS.get(label, label)
