"""Prepare a labelled image folder for training: detect, crop, de-duplicate, split by group.

    python -m training.prepare --data ../shared/datasets/face-mask-chandrikadeb7 --out data/prepared

Input: ImageFolder layout (one sub-folder per class). Output in --out:
  crops/<label>/<name>.png   aligned crops made by facemask.core.crops.crop_face (the serving crop)
  manifest.csv               one row per source image: status, label, box, landmarks, group, split, blur
  report.json                counts of what was used, skipped and why
Nothing is written next to the input data.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import random
import sys
from collections import Counter, defaultdict
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image
from tqdm import tqdm

from facemask.core.boxes import widths_heights
from facemask.core.classes import INCORRECT
from facemask.core.crops import SERVED, CropGeometry, crop_face
from facemask.core.detector import DetectOptions, RetinaFaceDetector
from facemask.core.images import ImageError, decode_image, list_images
from facemask.core.settings import Settings
from training.annotations import DatasetError
from training.manifest import MANIFEST_COLUMNS, manifest_row, save_crop
from training.scenes import scene_rows
from training.synthetic_masks import synthetic_rows

DEFAULT_DATA = Settings.from_env().crops_dir
# A dataset image is usually one face filling most of the frame: try a small network input first (the face then
# matches the large anchors) and larger ones only when nothing is found.
DETECTION_SIDES = (320, 640, 1024)
SCORE_THRESHOLD = 0.5
# A second face at least this fraction of the main face's area makes the label ambiguous.
AMBIGUOUS_AREA_RATIO = 0.5
BLUR_THRESHOLD = 40.0  # variance of the Laplacian on the 96 px crop; below it the crop is reported as blurred
SPLIT_FRACTIONS = {"train": 0.8, "valid": 0.1, "test": 0.1}
def find_face(detector: RetinaFaceDetector, image: np.ndarray):
    """Main face of an image (or None) and a status string."""
    for side in DETECTION_SIDES:
        faces = detector.detect(image, DetectOptions(long_side=side, score_threshold=SCORE_THRESHOLD))
        if faces:
            break
    else:
        return None, "no_face", None

    def area(face):
        return float(np.prod(widths_heights(face.box)))

    faces.sort(key=lambda f: area(f) * f.det_score, reverse=True)
    if len(faces) > 1 and area(faces[1]) >= AMBIGUOUS_AREA_RATIO * area(faces[0]):
        return None, "ambiguous_faces", side
    return faces[0], "ok", side


def group_near_duplicates(hashes: dict[str, imagehash.ImageHash]) -> dict[str, int]:
    """Group ids: images whose difference hashes are equal share a group (transitively through equal hashes)."""
    by_hash = defaultdict(list)
    for key, value in hashes.items():
        by_hash[str(value)].append(key)
    groups = {}
    for group_id, members in enumerate(sorted(by_hash.values(), key=lambda m: m[0])):
        for key in members:
            groups[key] = group_id
    return groups


def split_groups(rows: list[dict], seed: int) -> None:
    """Stratified split by group: every group lands wholly in one split, class proportions kept."""
    rng = random.Random(seed)
    by_label: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        by_label[row["label"]][row["group"]].append(row)
    for _label, groups in sorted(by_label.items()):
        group_ids = sorted(groups)
        rng.shuffle(group_ids)
        total = sum(len(groups[g]) for g in group_ids)
        counts: Counter[str] = Counter()
        for group_id in group_ids:
            # Fill the split that is furthest below its quota, so groups of any size keep the fractions.
            split = min(SPLIT_FRACTIONS, key=lambda s: counts[s] / total - SPLIT_FRACTIONS[s])
            for row in groups[group_id]:
                row["split"] = split
            counts[split] += len(groups[group_id])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="ImageFolder: one sub-folder per class")
    parser.add_argument("--out", type=Path, default=Path("data/prepared"))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--scenes", type=Path, nargs="+", default=[],
                        help="also crop the faces of annotated photo sets (each images/ + annotations/, Pascal VOC), "
                             "split by photo")
    parser.add_argument("--synthetic", type=int, default=0, metavar="N",
                        help="draw N synthetic faces per unmasked face (a mask worn right or below the nose / on "
                             "the chin, or a hand over the mouth) and add the class `incorrect`; each keeps its "
                             "source face's split")
    parser.add_argument("--limit", type=int, default=0, help="use at most N images per class (quick runs, tests)")
    parser.add_argument("--detector", default="stock",
                        help="detector ONNX that finds and aligns the faces: 'stock' (default, the shipped "
                             "classifier's data and the detector training's crop-set labels) or a file")
    parser.add_argument("--crop-size", type=int, default=SERVED.size,
                        help="crop side in pixels (default: the served crop)")
    parser.add_argument("--face-fraction", type=float, default=SERVED.face_fraction,
                        help="share of the crop the landmark template spans; less keeps more context. A folder "
                             "prepared wider than a model needs serves it too (training.train --face-fraction)")
    args = parser.parse_args(argv)
    try:
        geometry = CropGeometry(args.crop_size, args.face_fraction)
    except ValueError as error:
        parser.error(str(error))

    if not args.data.is_dir():
        parser.error(f"data folder not found: {args.data}")
    classes = sorted(p.name for p in args.data.iterdir() if p.is_dir())
    if len(classes) < 2:
        parser.error(f"{args.data} needs at least two class sub-folders, found {classes}")
    if args.synthetic:
        classes = sorted({*classes, INCORRECT})
    files = []
    for label in classes:
        if not (args.data / label).is_dir():
            continue
        found = list_images(args.data / label)
        files += [(path, label) for path in (found[: args.limit] if args.limit else found)]

    detector = RetinaFaceDetector(model=args.detector)
    rows: list[dict] = []
    seen_md5: dict[str, str] = {}
    dhashes: dict = {}
    for path, label in tqdm(files, desc="detect + crop", unit="img"):
        row = manifest_row(source=str(path.relative_to(args.data)), label=label, dataset=args.data.name)
        rows.append(row)
        data = path.read_bytes()
        digest = hashlib.md5(data).hexdigest()
        if digest in seen_md5:
            row["status"] = f"exact_duplicate_of:{seen_md5[digest]}"
            continue
        seen_md5[digest] = row["source"]
        try:
            image = decode_image(data)
        except ImageError as error:
            row["status"] = f"unreadable:{error}"
            continue
        face, status, side = find_face(detector, image)
        row["status"], row["det_side"] = status, side or ""
        if face is None:
            continue
        row["box"] = json.dumps([round(float(v), 1) for v in face.box])
        save_crop(args.out, Path("crops") / label / (path.stem + ".png"),
                  crop_face(image, face.landmarks, face.box, geometry), face.landmarks, face.det_score, row)
        dhashes[row["source"]] = imagehash.dhash(Image.fromarray(image), hash_size=8)

    used = [r for r in rows if r["status"] == "ok"]
    groups = group_near_duplicates(dhashes)
    for row in used:
        row["group"] = groups[row["source"]]
    split_groups(used, args.seed)
    for scenes in args.scenes:
        if not (scenes / "annotations").is_dir():
            parser.error(f"{scenes} needs images/ and annotations/ sub-folders")
        try:
            rows += scene_rows(scenes, args.out, classes, SPLIT_FRACTIONS, args.seed, args.limit, detector, geometry)
        except DatasetError as error:
            parser.error(str(error))
        used = [r for r in rows if r["status"] == "ok"]
    if args.synthetic:
        roots = {args.data.name: args.data, **{scenes.name: scenes / "images" for scenes in args.scenes}}
        rows += synthetic_rows(rows, roots, args.out, args.seed, args.synthetic, geometry)
        used = [r for r in rows if r["status"] == "ok"]

    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "manifest.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    group_sizes = Counter(r["group"] for r in used if r["dataset"] == args.data.name)  # drawn faces share groups
    report = {
        "command": "python -m training.prepare " + " ".join(sys.argv[1:] if argv is None else argv),
        "data": str(args.data.resolve()), "classes": classes,
        "crop_geometry": {"size": geometry.size, "face_fraction": geometry.face_fraction},
        "images": len(rows), "seed": args.seed,
        "status": dict(Counter(r["status"].split(":")[0] for r in rows)),
        "used_per_class": dict(Counter(r["label"] for r in used)),
        "split": {s: dict(Counter(r["label"] for r in used if r["split"] == s)) for s in SPLIT_FRACTIONS},
        "used_per_dataset": dict(Counter(r["dataset"] for r in used)),
        "near_duplicate_groups": sum(1 for g, n in group_sizes.items() if n > 1 and not str(g).startswith("scene:")),
        "blurred": dict(Counter(r["dataset"] for r in used if float(r["blur"]) < BLUR_THRESHOLD)),
        "skipped_examples": {k: [r["source"] for r in rows if r["status"].startswith(k)][:20]
                             for k in ("no_face", "ambiguous_faces", "unreadable", "exact_duplicate_of",
                                       "label_not_in_classes")},
    }
    (args.out / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({k: report[k] for k in ("status", "split", "used_per_dataset", "near_duplicate_groups",
                                             "blurred")}, indent=2))
    return report


if __name__ == "__main__":
    main()
