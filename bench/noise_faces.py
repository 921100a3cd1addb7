"""Boxes whose two eyes fall outside the photo: what the detector's check on them removes, and what it keeps.

    python -m bench.noise_faces                  # 50 noise images, every annotated photo, 1,500 crop-set photos

Uniform noise makes the detector report frame-filling "faces" cut at the top, their eye landmarks above the image.
The detector now asks such boxes for a score of DEFAULT_EYES_OUTSIDE_MIN_SCORE. This counts, with the check and
without it (eyes_outside_min_score 0): faces on noise; on the annotated photos of both photo sets, eyes-outside
boxes that match an annotated face at IoU 0.3 (real faces: must all stay) and those that match none; on one-person
crop-set photos, the boxes beyond the first.
"""
from __future__ import annotations

import argparse
import random
from dataclasses import replace

import numpy as np
from tqdm import tqdm

from bench.common import Report, command_line
from facemask.core.detector import DetectOptions, create_detector, eyes_in_view
from facemask.core.images import decode_image, list_images
from facemask.core.paths import RESULTS_DIR
from facemask.core.settings import Settings
from training.annotations import greedy_match, load_scenes


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--noise-images", type=int, default=50)
    parser.add_argument("--crops", type=int, default=1500, help="crop-set photos (a seeded random subset)")
    parser.add_argument("--out-dir", default=RESULTS_DIR)
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    detector = create_detector(settings.detector_model)
    checked, unchecked = DetectOptions(), replace(DetectOptions(), eyes_outside_min_score=0.0)
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(args.noise_images)]
    rows = [{"input": f"{args.noise_images} uniform-noise 640x480 images", "measure": "faces found",
             "without the check": sum(len(detector.detect(image, unchecked)) for image in noise),
             "with the check": sum(len(detector.detect(image, checked)) for image in noise)}]
    matched = {"without the check": 0, "with the check": 0}
    unmatched = dict(matched)
    scores = []
    for folder in (settings.scenes_dir, settings.real_photos_dir):
        for annotation in tqdm(load_scenes(folder / "images", folder / "annotations"), desc=folder.name):
            image = decode_image(annotation.image)
            height, width = image.shape[:2]
            for name, options in (("without the check", unchecked), ("with the check", checked)):
                faces = detector.detect(image, options)
                if not faces:
                    continue
                points = np.stack([face.landmarks for face in faces])
                outside = ~eyes_in_view(points, height, width)
                match = greedy_match([f.box for f in faces], [f.det_score for f in faces], annotation.boxes, 0.3) \
                    if len(annotation.boxes) else [-1] * len(faces)
                for face, out, gt in zip(faces, outside, match):
                    if out:
                        (matched if gt >= 0 else unmatched)[name] += 1
                        if name == "without the check" and gt >= 0:
                            scores.append(face.det_score)
    rows.append({"input": "2,279 annotated photos (scenes + real web photos, all splits)",
                 "measure": "eyes-outside boxes on an annotated face (IoU 0.3)", **matched})
    rows.append({"input": "2,279 annotated photos (scenes + real web photos, all splits)",
                 "measure": "eyes-outside boxes on no annotated face", **unmatched})
    photos = list_images(settings.crops_dir)
    random.Random(0).shuffle(photos)
    extra = {"without the check": 0, "with the check": 0}
    for path in tqdm(photos[: args.crops], desc="crop set"):
        image = decode_image(path.read_bytes())
        for name, options in (("without the check", unchecked), ("with the check", checked)):
            extra[name] += max(0, len(detector.detect(image, options)) - 1)
    rows.append({"input": f"{min(args.crops, len(photos))} one-person crop-set photos", "measure": "boxes beyond one",
                 **extra})
    report = Report("noise_faces", "Boxes with both eyes outside the photo", command_line("bench.noise_faces", argv),
                    out_dir=args.out_dir, eyes_outside_min_score=checked.eyes_outside_min_score)
    report.table("Faces kept with and without the check", rows,
                 "Scores of the real faces with both eyes outside the photo (without the check): "
                 + ", ".join(f"{s:.3f}" for s in sorted(scores)) + ".")
    report.save()
    return {"rows": rows, "real_face_scores": scores}


if __name__ == "__main__":
    main()
