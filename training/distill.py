"""Knowledge distillation from exported classifiers: the student learns the teachers' mean probabilities on the very
batch it sees (after augmentation), beside the hard labels.

Teachers are ONNX models as served (softmax output, same normalisation), run by ONNX Runtime on the batch the
student gets, so no torch copy of them is needed and any exported model, an ensemble of several or a larger
architecture, can teach. Only the training loss changes: the validation loss stays the plain weighted cross entropy,
comparable with every other run.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from fastai.callback.core import Callback

from facemask.classifier import MaskClassifier
from facemask.crops import CropGeometry


class DistillationCallback(Callback):
    order = 60

    def __init__(self, teachers: list[Path], classes: list[str], geometry: CropGeometry, alpha: float = 0.5,
                 temperature: float = 2.0):
        """alpha: the share of the hard-label loss (1 - alpha goes to matching the teachers); temperature softens
        both distributions so the teachers' second choices teach too."""
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

    def teacher_probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        inputs = batch.detach().float().cpu().numpy()
        shared = [teacher.session.run(None, {teacher.input_name: inputs})[0][:, columns]
                  for teacher, columns in zip(self.teachers, self.columns)]
        probabilities = np.mean([p / p.sum(axis=1, keepdims=True).clip(min=1e-7) for p in shared], axis=0)
        return torch.from_numpy(probabilities.astype(np.float32)).to(batch.device)

    def after_loss(self):
        if not self.training:
            return
        soft = torch.log(self.teacher_probabilities(self.xb[0]).clamp(min=1e-7)) / self.temperature
        target = F.softmax(soft, dim=-1)
        student = F.log_softmax(self.pred.float() / self.temperature, dim=-1)
        matching = F.kl_div(student, target, reduction="batchmean") * self.temperature ** 2
        self.learn.loss_grad = self.alpha * self.learn.loss_grad + (1.0 - self.alpha) * matching
        self.learn.loss = self.learn.loss_grad.clone()
