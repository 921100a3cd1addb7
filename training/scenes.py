"""Face crops from annotated scene photos (Pascal VOC), for training on the faces the product really sees.

The crop set is mostly large, frontal faces; shop and street scenes are full of 20-60 px faces, side views and
blur. Each annotated face is cropped with the serving crop (facemask.core.crops.crop_face) on the landmarks of the
detection that overlaps it; faces the detector misses are reported and left out, since the classifier never sees them
when serving either. Scenes are split by photo, with the committed split of that data set
(training.splits.split_file_for), so every face of a photo lands in the same split and the held-out photos stay unseen
end to end, by both models.

The faces are found the way the service finds them (the detector's default pyramid and score threshold), so the
classifier learns from the boxes, landmarks and crops that /classify will be sent, never from the annotator's box;
an annotated face the service would not detect gives no crop.
"""
from __future__ import annotations

import json
from pathlib import Path

from tqdm import tqdm

from facemask.core.classes import canonical_label
from facemask.core.crops import SERVED, CropGeometry, crop_face
from facemask.core.detector import DetectOptions, RetinaFaceDetector
from facemask.core.images import decode_image
from training.annotations import greedy_match, load_scenes
from training.manifest import manifest_row, save_crop
from training.splits import photo_splits, split_file_for

# IoU 0.3: the real-photo set's boxes take in the whole head, taller than the detector's face box.
MATCH_IOU = 0.3


def scene_rows(scenes: Path, out: Path, classes: list[str], fractions: dict[str, float], seed: int,
               limit: int = 0, detector: RetinaFaceDetector | None = None,
               geometry: CropGeometry = SERVED) -> list[dict]:
    """Manifest rows (one per annotated face) and crops under out/crops/<label>/scene_<image>_<n>.png."""
    annotations = load_scenes(scenes / "images", scenes / "annotations", limit=limit or None, seed=seed)
    splits = photo_splits([a.image.stem for a in annotations], fractions, seed, split_file_for(scenes.name))
    detector = detector or RetinaFaceDetector()
    options = DetectOptions()  # the service's defaults
    rows = []
    for annotation in tqdm(annotations, desc=f"{scenes.name} faces", unit="img"):
        image = decode_image(annotation.image)
        faces = detector.detect(image, options)
        # Match the other way round: each annotated face takes the detection that overlaps it most.
        matches = greedy_match(annotation.boxes, [1.0] * len(annotation.boxes), [f.box for f in faces], MATCH_IOU)
        for index, (box, scene_label) in enumerate(zip(annotation.boxes, annotation.labels)):
            label = canonical_label(scene_label)
            row = manifest_row(source=f"{annotation.image.name}#{index}", label=label, status="ok",
                               box=json.dumps([round(float(v), 1) for v in box]), det_side=str(options.long_side),
                               group=f"scene:{annotation.image.stem}", split=splits[annotation.image.stem],
                               dataset=scenes.name)
            rows.append(row)
            if label not in classes:
                row["status"] = "label_not_in_classes"
                continue
            if matches[index] < 0:
                row["status"] = "no_face"
                continue
            face = faces[matches[index]]
            save_crop(out, Path("crops") / label / f"scene_{annotation.image.stem}_{index}.png",
                      crop_face(image, face.landmarks, face.box, geometry), face.landmarks, face.det_score, row)
    return rows
