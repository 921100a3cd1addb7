"""Served speed of classifier candidates against the shipped model, alternating rounds in one run.

    python -m bench.classifier_sizes runs/late96/model.onnx runs/late96/model_int8.onnx --sizes 128 160 \\
        --name classifier_sizes

Every model, the shipped one first, is measured in each round (so load changes on a shared machine hit all alike)
through facemask.core.classifier.MaskClassifier with one ONNX Runtime thread, in batches of 64 and of 1, on the real
face crops of the sample images; the table gives each model's median crops/s and its ratio to the shipped model's.
--sizes adds EfficientNet-Lite0 graphs at those input sizes, exported from the package's ImageNet weights with a
new three-class head: the time per crop depends on the graph, not on the trained values, so the input-size sweep's
speed column needs no trained model.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from bench.classifier_speed import onnx_crops_per_second
from bench.common import REPO_ROOT, RESULTS_DIR, Report, command_line
from bench.speed import sample_crops
from facemask.core.classifier import DEFAULT_MODEL, MaskClassifier
from facemask.core.images import decode_image, list_images


def lite_graph(size: int, folder: Path) -> Path:
    """An EfficientNet-Lite0 classifier graph at an input size, as training.train exports it."""
    from types import SimpleNamespace

    from fastai.vision.all import create_head
    from torch import nn

    from facemask.core.classes import INCORRECT, WITH_MASK, WITHOUT_MASK
    from facemask.core.crops import SERVED, CropGeometry
    from training.onnx_export import export_onnx
    from training.pretrained import BODY_FEATURES, LiteBody, efficientnet_lite0

    classes = sorted([INCORRECT, WITH_MASK, WITHOUT_MASK])
    model = nn.Sequential(LiteBody(efficientnet_lite0()), create_head(BODY_FEATURES, len(classes))).eval()
    path = folder / f"efficientnet_lite0_{size}px.onnx"
    export_onnx(SimpleNamespace(model=model, dls=SimpleNamespace(vocab=classes)), path, arch="efficientnet_lite0",
                geometry=CropGeometry(size, SERVED.face_fraction))
    return path


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", type=Path, nargs="*", help="candidate classifier ONNX files")
    parser.add_argument("--shipped", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--sizes", type=int, nargs="*", default=[], help="add Lite0 graphs at these input sizes")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--name", default="classifier_sizes")
    args = parser.parse_args(argv)
    if missing := [str(path) for path in [args.shipped, *args.models] if not path.is_file()]:
        raise SystemExit(f"error: model not found: {', '.join(missing)}")
    crops = [decode_image(data) for data in sample_crops(list_images(REPO_ROOT / "sample-images"))]
    with tempfile.TemporaryDirectory() as scratch:
        models = {"shipped": args.shipped, **{str(path): path for path in args.models},
                  **{f"Lite0 graph, {size} px": lite_graph(size, Path(scratch)) for size in args.sizes}}
        # Speed only: the crops need not be cut at each model's geometry (MaskClassifier resizes them).
        classifiers = {name: MaskClassifier(path, num_threads=1, served_crops=False) for name, path in models.items()}
        sizes = {name: path.stat().st_size for name, path in models.items()}
        measured: dict[str, dict[int, list[float]]] = {name: {64: [], 1: []} for name in models}
        for _ in range(args.rounds):
            for batch in (64, 1):
                for name, classifier in classifiers.items():
                    measured[name][batch].append(onnx_crops_per_second(classifier, crops, batch, args.seconds))
    shipped = {batch: statistics.median(measured["shipped"][batch]) for batch in (64, 1)}
    rows = []
    for name, classifier in classifiers.items():
        medians = {batch: statistics.median(measured[name][batch]) for batch in (64, 1)}
        rows.append({"model": name, "arch": classifier.arch, "input px": classifier.crop_size,
                     "MB": round(sizes[name] / 1e6, 1), "crops/s batch 64": round(medians[64], 1),
                     "ratio to shipped (b64)": round(medians[64] / shipped[64], 2),
                     "crops/s batch 1": round(medians[1], 1),
                     "ratio to shipped (b1)": round(medians[1] / shipped[1], 2)})
    report = Report(args.name, "Classifier candidates: served speed against the shipped model, one run",
                    command_line("bench.classifier_sizes", argv), out_dir=args.out_dir)
    report.note(f"{len(crops)} real face crops from the sample images; one ONNX Runtime thread; median of "
                f"{args.rounds} alternating rounds of {args.seconds:.0f} s per model and batch size.")
    report.table("Crops per second", rows)
    report.save()
    return {"rows": rows}


if __name__ == "__main__":
    main()
