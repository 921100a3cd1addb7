"""Knowledge distillation from exported classifiers: the student learns the teachers' mean probabilities on the very
batch it sees (after augmentation), beside the hard labels.

Teachers are ONNX models as served (softmax output, same normalisation), so any exported model, an ensemble of
several or a larger architecture, can teach. They run by ONNX Runtime on the batch the student gets; where the student
trains on a GPU they run there too, converted by onnx2torch, because ONNX Runtime on the CPU would compete with the
data loaders for the cores and become the slowest step. Only the training loss changes: the validation loss stays
the plain weighted cross entropy, comparable with every other run.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from fastai.callback.core import Callback

from facemask.core.classifier import MaskClassifier
from facemask.core.crops import CropGeometry


class DistillationCallback(Callback):
    order = 60

    def __init__(self, teachers: list[Path], classes: list[str], geometry: CropGeometry, alpha: float = 0.5,
                 temperature: float = 2.0, on_torch: bool | None = None):
        """alpha: the share of the hard-label loss (1 - alpha goes to matching the teachers); temperature softens
        both distributions so the teachers' second choices teach too. on_torch: run the teachers with torch
        (default: where CUDA is available)."""
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"alpha must be in [0, 1): {alpha}")
        self.teachers = [MaskClassifier(path, served_crops=False) for path in teachers]
        # Teachers may order their classes differently from the student's vocabulary, or know more of them (a
        # three-class teacher for a two-class student: its probabilities are renormalised over the shared ones).
        for teacher in self.teachers:
            if teacher.geometry != geometry:
                raise ValueError(f"teacher {teacher.model_path} was trained on {teacher.geometry}, the student on "
                                 f"{geometry}")
            if missing := sorted(set(classes) - set(teacher.classes)):
                raise ValueError(f"teacher {teacher.model_path} does not know the classes {missing}")
        self.columns = [[teacher.classes.index(name) for name in classes] for teacher in self.teachers]
        self.alpha, self.temperature = alpha, temperature
        on_torch = torch.cuda.is_available() if on_torch is None else on_torch
        self.torch_teachers = [_torch_module(teacher.model_path) for teacher in self.teachers] if on_torch else []

    def teacher_probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        if self.torch_teachers:
            return self._torch_probabilities(batch)
        inputs = batch.detach().float().cpu().numpy()
        shared = [teacher.session.run(None, {teacher.input_name: inputs})[0][:, columns]
                  for teacher, columns in zip(self.teachers, self.columns)]
        probabilities = np.mean([p / p.sum(axis=1, keepdims=True).clip(min=1e-7) for p in shared], axis=0)
        return torch.from_numpy(probabilities.astype(np.float32)).to(batch.device)

    @torch.no_grad()
    def _torch_probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        inputs = batch.detach().float()
        shared = []
        for module, columns in zip(self.torch_teachers, self.columns):
            module.to(inputs.device)
            with torch.autocast(device_type=inputs.device.type, enabled=False):
                probabilities = module(inputs).float()[:, columns]
            shared.append(probabilities / probabilities.sum(dim=1, keepdim=True).clamp(min=1e-7))
        return torch.stack(shared).mean(dim=0)

    def after_loss(self):
        if not self.training:
            return
        soft = torch.log(self.teacher_probabilities(self.xb[0]).clamp(min=1e-7)) / self.temperature
        target = F.softmax(soft, dim=-1)
        student = F.log_softmax(self.pred.float() / self.temperature, dim=-1)
        matching = F.kl_div(student, target, reduction="batchmean") * self.temperature ** 2
        self.learn.loss_grad = self.alpha * self.learn.loss_grad + (1.0 - self.alpha) * matching
        self.learn.loss = self.learn.loss_grad.clone()


def _torch_module(path: Path) -> torch.nn.Module:
    import onnx
    from onnx2torch import convert

    return convert(onnx.load(str(path))).eval()
