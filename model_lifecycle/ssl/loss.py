"""DINO's loss: cross-entropy from the centred, sharpened teacher to the student, across views.

The teacher's logits are centred (an EMA of their batch mean is subtracted) and sharpened (a low
temperature); centring alone would flatten the output, sharpening alone would collapse it to one
prototype, together they keep it informative. Every student view is matched against every teacher
(global) view except its own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class DinoLoss(nn.Module):
    center: Tensor

    def __init__(self, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9) -> None:
        super().__init__()
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    def forward(self, student: list[Tensor], teacher: list[Tensor], teacher_temp: float) -> Tensor:
        """`student`: logits per view (globals first); `teacher`: logits of the global views."""
        targets = [F.softmax((t - self.center) / teacher_temp, dim=-1).detach() for t in teacher]
        total, terms = student[0].new_zeros(()), 0
        for ti, target in enumerate(targets):
            for si, logits in enumerate(student):
                if si == ti:
                    continue
                total = (
                    total + torch.sum(-target * F.log_softmax(logits / self.student_temp, dim=-1), -1).mean()
                )
                terms += 1
        self.update_center(torch.cat(teacher))
        return total / max(terms, 1)

    @torch.no_grad()
    def update_center(self, teacher: Tensor) -> None:
        batch_center = teacher.mean(0, keepdim=True)
        self.center.mul_(self.center_momentum).add_(batch_center, alpha=1 - self.center_momentum)
