"""Make group_worn_wrong.jpg: the unmasked group photo with masks drawn on: two worn right, three worn wrong.

    python sample-images/make_incorrect_sample.py

The masks are drawn by training/synthetic_masks.py (OpenCV shapes and textures, no third-party mask images) on the
faces our own RetinaFace finds; labels.json gets each face's centre and its label, true by construction:
`incorrect` for a mask under the nose or on the chin.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from facemask.core.detector import RetinaFaceDetector  # noqa: E402
from facemask.core.images import decode_image, encode_jpeg  # noqa: E402
from training.synthetic_masks import KIND_LABEL, draw_mask  # noqa: E402

HERE = Path(__file__).resolve().parent
SOURCE, TARGET = "group_unmasked.jpg", "group_worn_wrong.jpg"
# Faces left to right: what each one wears.
KINDS = ("below_nose", "worn", None, "on_chin", "worn", "below_nose")
SEED = 7


def main() -> None:
    photo = decode_image(HERE / SOURCE)
    faces = sorted(RetinaFaceDetector().prepare(long_side=1280).detect(photo), key=lambda f: f.box[0])
    if len(faces) != len(KINDS):
        raise SystemExit(f"expected {len(KINDS)} faces in {SOURCE}, found {len(faces)}")
    rng = np.random.default_rng(SEED)
    labels = []
    for face, kind in zip(faces, KINDS):
        if kind:
            photo = draw_mask(photo, face.landmarks, kind, rng)
        centre = [round(float(face.box[0] + face.box[2]) / 2, 1), round(float(face.box[1] + face.box[3]) / 2, 1)]
        labels.append({"center": centre, "label": KIND_LABEL[kind] if kind else "without_mask"})
    (HERE / TARGET).write_bytes(encode_jpeg(photo))
    all_labels = json.loads((HERE / "labels.json").read_text())
    all_labels[TARGET] = labels
    (HERE / "labels.json").write_text(json.dumps(all_labels, indent=1) + "\n")
    print(f"wrote {TARGET}: " + ", ".join(label["label"] for label in labels))


if __name__ == "__main__":
    main()
