"""Start training from an exported classifier ONNX (e.g. the shipped one) instead of random weights.

Where there is no internet for ImageNet weights and the CPU time for training from scratch is short, the served
model's own weights are the best start: `onnx2torch` turns the ONNX graph (batch norms folded into the convolutions
by the exporter) into a trainable torch.fx module. The final softmax is dropped (the loss applies it) and the last
layer gets one output column per class of the new data: a class the old model knew keeps its column, a new one
(`incorrect`) starts from the mean of the old columns, i.e. undecided between them.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from facemask.core.paths import CLASSIFIER_FLOAT32_MODEL, REPO_ROOT
from training.onnx_export import export_onnx

# The served classifier is int8 (training.quantize), which onnx2torch cannot turn back into a trainable module.
SERVED_FLOAT32 = CLASSIFIER_FLOAT32_MODEL

# Body stages kept frozen (fx names of the stem convolution and ResNet layer1): their features are generic, and
# not back-propagating through the two full-resolution stages roughly halves the time of a training step.
FROZEN_PREFIXES = ("model/model/0/model/0/0/", "model/model/0/model/0/4/")


def _classes(model: onnx.ModelProto) -> list[str]:
    metadata = {entry.key: entry.value for entry in model.metadata_props}
    return json.loads(metadata["classes"])


def _output_weights(model: onnx.ModelProto) -> onnx.TensorProto:
    """The (features, classes) weight of the final MatMul, the one that feeds the softmax."""
    graph = model.graph
    (softmax,) = [n for n in graph.node if n.op_type == "Softmax"]
    producer = next(n for n in graph.node if softmax.input[0] in n.output)
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    if producer.op_type == "DequantizeLinear":
        raise ValueError(f"an int8 model cannot be fine-tuned: start from its float32 source (the served model's is "
                         f"{SERVED_FLOAT32.relative_to(REPO_ROOT)})")
    if producer.op_type not in ("MatMul", "Gemm") or producer.input[1] not in initializers:
        raise ValueError(f"unexpected last layer {producer.op_type}: export the model with training.onnx_export")
    if len(producer.input) > 2:
        raise ValueError("a last layer with a bias is not supported")
    return initializers[producer.input[1]]


def trainable_module(path: str | Path, classes: list[str], seed: int = 0) -> torch.nn.Module:
    """A torch module returning logits for `classes`, initialised from the classifier ONNX at path."""
    from onnx2torch import convert

    model = copy.deepcopy(onnx.load(str(path)))
    old_classes = _classes(model)
    weights = _output_weights(model)
    old = numpy_helper.to_array(weights)
    rng = np.random.default_rng(seed)
    columns = [old[:, old_classes.index(name)] if name in old_classes
               else old.mean(axis=1) + np.asarray(rng.normal(0.0, 0.01, old.shape[0]), dtype=old.dtype)
               for name in classes]
    weights.CopyFrom(numpy_helper.from_array(np.stack(columns, axis=1).astype(np.float32), weights.name))

    graph = model.graph
    (softmax,) = [n for n in graph.node if n.op_type == "Softmax"]
    graph.output[0].name = softmax.input[0]
    del graph.output[0].type.tensor_type.shape.dim[:]
    graph.node.remove(softmax)
    module = convert(model)
    # onnx2torch keeps MatMul weights as buffers; training needs them as parameters. Integer buffers are shapes
    # (a model exported from an earlier fine-tune carries its Reshape target) and stay buffers.
    holder = module.initializers
    for name, value in list(holder.named_buffers(recurse=False)):
        if not value.is_floating_point():
            continue
        delattr(holder, name)
        holder.register_parameter(name, torch.nn.Parameter(value.clone()))
    for name, parameter in module.named_parameters():
        if name.startswith(FROZEN_PREFIXES):
            parameter.requires_grad_(False)
    return module


def allow_export_of_converted_modules() -> None:
    """onnx2torch 1.5's Shape module asks torch.onnx.symbolic_helper for the export opset, which torch 2.9+ keeps
    elsewhere; point it there so a module converted from ONNX can be exported back."""
    from torch.onnx import symbolic_helper

    if hasattr(symbolic_helper, "GLOBALS"):
        return
    try:
        from torch.onnx._internal.torchscript_exporter._globals import GLOBALS
    except ImportError:  # older torch: onnx2torch finds the opset itself
        return
    symbolic_helper.GLOBALS = GLOBALS


def export_trained(run: Path, init_onnx: Path, classes: list[str], arch: str) -> dict:
    """Export run/best.pth (saved by training.train) of a module made by trainable_module, to run/model.onnx."""
    module = trainable_module(init_onnx, classes)
    module.load_state_dict(torch.load(Path(run) / "best.pth", map_location="cpu"))
    allow_export_of_converted_modules()
    learner = SimpleNamespace(model=module, dls=SimpleNamespace(vocab=classes))
    return export_onnx(learner, Path(run) / "model.onnx", arch=arch)
