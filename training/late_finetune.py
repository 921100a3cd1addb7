"""Fine-tune the late half of the ImageNet-pretrained EfficientNet-Lite0 on its early half's features, computed once:
a CPU-sized stand-in for `training.train --arch efficientnet_lite0 --pretrained` where the cores are few and shared.

    python -m training.late_finetune --prepared data/prepared160 --crop-size 96 --epochs 8 --out runs/late96
    python -m training.late_finetune ... --fold 0 5 --out runs/cv/late96__fold0of5     # training.crossval names

The early half (stem and blocks 0-7: edges, textures, parts; 60 % of the network's compute at this input size)
keeps its ImageNet weights and runs once per crop, in eval mode, without augmentation; its outputs are cached in
--cache (one file per prepared folder and crop size, shared by every fold). The late half (blocks 8-15 and the last
1x1 convolution, at their ImageNet weights) and a new fastai head train on the cached features with discriminative
learning rates (late half at a tenth of the head's), one cycle, the epoch of the lowest valid loss kept. The result is
the same network as the full fine-tune's and is exported the same way (training.onnx_export), so it is scored and
served like any other model.

What it gives up against the full fine-tune: augmentation (each crop is seen as cut) and any change to the early
layers. On 2 CPU cores shared with other jobs an epoch of the full fine-tune took 12-60 min; here it takes about a
minute after the cache is built. The full recipe is the one to run where a GPU is lent (training/gpu_rounds).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from fastai.callback.tracker import SaveModelCallback
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastai.vision.all import CrossEntropyLossFlat, Learner, accuracy, create_head, set_seed
from torch import nn

from facemask.core.crops import SERVED, CropGeometry, reframe, to_model_input
from facemask.core.images import decode_image
from training.data import prepared_geometry, read_manifest
from training.folds import CV_SPLITS, with_fold_split
from training.onnx_export import export_onnx
from training.pretrained import BODY_FEATURES, LiteBody, PretrainedWeightsUnavailable, efficientnet_lite0

ARCH = "efficientnet_lite0"


def early_features(body: LiteBody, prepared: Path, geometry: CropGeometry, cache: Path,
                   batch: int = 64) -> tuple[np.ndarray, torch.Tensor]:
    """The early half's outputs for every train and valid crop of the folder (manifest rows in order), cached."""
    frame = read_manifest(prepared)
    frame = frame[frame["split"].isin(CV_SPLITS)]
    key = cache / f"{prepared.resolve().name}_{geometry.size}px_f{geometry.face_fraction:.2f}.pt"
    if key.is_file():
        saved = torch.load(key, weights_only=True)
        if list(saved["crops"]) == list(frame["crop"]):
            return frame.index.to_numpy(), saved["features"]
    source = prepared_geometry(prepared)
    body.eval()
    chunks = []
    with torch.no_grad():
        for start in range(0, len(frame), batch):
            crops = [reframe(decode_image(Path(p)), source, geometry) for p in frame["path"][start:start + batch]]
            chunks.append(body.early(torch.from_numpy(to_model_input(crops, geometry.size))).half())
            print(f"\rearly features {min(start + batch, len(frame))}/{len(frame)}", end="", flush=True)
    print()
    features = torch.cat(chunks).contiguous()
    cache.mkdir(parents=True, exist_ok=True)
    torch.save({"crops": list(frame["crop"]), "features": features}, key)
    return frame.index.to_numpy(), features


class LateHalf(nn.Module):
    def __init__(self, body: LiteBody, head: nn.Module):
        super().__init__()
        self.body, self.head = body, head

    def forward(self, x):
        return self.head(self.body.late(x.float()))


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepared", type=Path, required=True)
    parser.add_argument("--crop-size", type=int, default=SERVED.size)
    parser.add_argument("--face-fraction", type=float, default=SERVED.face_fraction)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-3, help="the head's; the late half gets a tenth")
    parser.add_argument("--weight-power", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--fold", type=int, nargs=2, default=None, metavar=("K", "N"))
    parser.add_argument("--cache", type=Path, default=Path("runs/early_features"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if not (args.prepared / "manifest.csv").is_file():
        parser.error(f"{args.prepared}/manifest.csv not found: run training.prepare first")
    geometry = CropGeometry(args.crop_size, args.face_fraction)
    set_seed(args.seed, reproducible=True)
    try:
        body = LiteBody(efficientnet_lite0(pretrained=True))
    except PretrainedWeightsUnavailable as error:
        sys.exit(f"error: {error}")
    started = time.time()
    index, features = early_features(body, args.prepared, geometry, args.cache)
    frame = read_manifest(args.prepared).loc[index]
    if args.fold:
        frame = with_fold_split(frame, args.fold[0], args.fold[1])
    classes = sorted(set(frame["label"]))
    labels = torch.tensor([classes.index(label) for label in frame["label"]])
    is_valid = torch.from_numpy((frame["split"] == "valid").to_numpy())
    train_ds = list(zip(features[~is_valid], labels[~is_valid]))
    valid_ds = list(zip(features[is_valid], labels[is_valid]))
    dls = DataLoaders(DataLoader(train_ds, bs=args.batch_size, shuffle=True, drop_last=True),
                      DataLoader(valid_ds, bs=args.batch_size * 2))
    counts = torch.bincount(labels[~is_valid], minlength=len(classes)).float()
    weights = (counts.sum() / (len(classes) * counts.clamp(min=1))) ** args.weight_power
    head = create_head(BODY_FEATURES, len(classes))
    model = LateHalf(body, head)

    def splitter(model: LateHalf) -> list[list[nn.Parameter]]:
        return [model.body.parameter_groups()[1], list(model.head.parameters())]

    for parameter in body.parameter_groups()[0]:
        parameter.requires_grad_(False)
    learner = Learner(dls, model, loss_func=CrossEntropyLossFlat(weight=weights), metrics=accuracy,
                      splitter=splitter, path=args.out, model_dir=".")
    args.out.mkdir(parents=True, exist_ok=True)
    best = SaveModelCallback(monitor="valid_loss", fname="best", with_opt=False)
    learner.fit_one_cycle(args.epochs, slice(args.lr / 10, args.lr), cbs=[best])
    train_seconds = time.time() - started

    with open(args.out / "history.csv", "w") as handle:
        handle.write("epoch,train_loss,valid_loss,accuracy\n")
        for epoch, values in enumerate(learner.recorder.values, 1):
            handle.write(f"{epoch}," + ",".join(f"{float(v):.5f}" for v in values) + "\n")
    served = SimpleNamespace(model=nn.Sequential(body, head), dls=SimpleNamespace(vocab=classes))
    export_onnx(served, args.out / "model.onnx", arch=ARCH, geometry=geometry)
    config = {**vars(args), "arch": ARCH, "pretrained": True, "stages": None, "classes": classes,
              "recipe": "late half + head on cached early-half features (training.late_finetune)",
              "command": "python -m training.late_finetune " + " ".join(argv if argv is not None else sys.argv[1:]),
              "train_seconds": round(train_seconds, 1), "train_images": len(train_ds), "valid_images": len(valid_ds),
              "best_valid_loss": float(best.best), "machine": f"{platform.machine()}, CPU",
              "versions": {"torch": torch.__version__, "python": sys.version.split()[0]}}
    (args.out / "train_config.json").write_text(json.dumps(config, indent=2, default=str))
    print(f"trained in {train_seconds / 60:.1f} min; exported {args.out / 'model.onnx'}")
    return args.out


if __name__ == "__main__":
    main()
