"""DINO self-distillation of the detector's backbone on a facility's unlabeled frames.

Student and teacher start as the shipped backbone, each with a fresh `DinoHead`; the teacher is an
exponential moving average of the student (momentum rising from `momentum` to 1) and sees only the
two global crops, the student every crop (`views.multi_crop`). For the first `head_warmup_steps`
only the student's head trains, so the random head fits the shipped features before any gradient
reaches the backbone. A share of each batch are replay frames (the original training
distribution), and on those, un-augmented, an *anchor* term keeps the student's dense feature map
(what the detector's heads read) close to the shipped backbone's: adaptation may move the features
of the drifted frames, not forget the old ones. The result is the shipped detector with the
teacher's backbone (DINO's evaluated model) and the shipped heads; `finetune` then fits its last
blocks and heads to the verified labels.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edge.model.detector import PackageDetector
from edge.model.vit import VisionTransformer
from model_lifecycle.data import normalize_on_device
from model_lifecycle.finetune import TrainingResult
from model_lifecycle.ssl.head import DinoHead
from model_lifecycle.ssl.loss import DinoLoss
from model_lifecycle.ssl.views import ViewSpec, local_size_for, multi_crop
from model_lifecycle.train import lr_lambda, param_groups

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AdaptOptions:
    steps: int = 300
    batch_size: int = 32
    """Frames per step, each cut into 2 global and `local_crops` local views."""
    replay_share: float = 0.25
    """Share of each batch drawn from the replay frames (the rest from the unlabeled frames)."""
    local_crops: int = 6
    lr: float = 1e-4
    head_lr: float = 1e-3
    weight_decay: float = 0.04
    warmup_steps: int = 30
    head_warmup_steps: int = 50
    """Steps at the start in which only the DINO head trains (the backbone stays as shipped)."""
    momentum: float = 0.996
    """Teacher EMA momentum at the start; it follows a cosine to 1 by the last step."""
    teacher_temp: float = 0.04
    student_temp: float = 0.1
    out_dim: int = 2048
    pooling: Literal["cls", "mean"] = "cls"
    """What the head reads: the normalised class token (DINO) or the mean of the patch tokens."""
    anchor_weight: float = 1.0
    """Weight of 1 - cosine between the student's and the shipped backbone's feature maps on replay."""
    amp: bool = True
    """bf16 autocast on CUDA."""
    device: str = "cpu"
    """cpu, cuda or auto (cuda when available)."""
    threads: int | None = 2
    seed: int = 0
    log_every: int = 20
    time_limit_s: float | None = None
    """Stop early once this much wall time has passed."""


class _Student(nn.Module):
    """Backbone + DINO head; `embed` is what the head reads (`AdaptOptions.pooling`)."""

    def __init__(self, backbone: VisionTransformer, head: DinoHead, pooling: str) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.pooling = pooling

    def embed(self, images: Tensor) -> Tensor:
        x = self.backbone.tokens(images)
        if self.pooling == "mean":
            h, w = self.backbone.patch_grid(images)
            return self.backbone.norm(x[:, -h * w :]).mean(1)
        return self.backbone.norm(x[:, 0])

    def forward(self, views: list[Tensor]) -> list[Tensor]:
        """Head logits per view; views of one size go through the backbone together."""
        out: list[Tensor] = []
        i = 0
        while i < len(views):
            j = i
            while j < len(views) and views[j].shape == views[i].shape:
                j += 1
            logits = self.head(self.embed(normalize_on_device(torch.cat(views[i:j]) * 255.0)))
            out.extend(logits.chunk(j - i))
            i = j
        return out


def _device(name: str) -> torch.device:
    return torch.device(
        "cuda" if name == "auto" and torch.cuda.is_available() else name.replace("auto", "cpu")
    )


def _stack(images: Sequence[np.ndarray], device: torch.device) -> Tensor:
    return torch.from_numpy(np.stack(images)).to(device) if len(images) else torch.empty(0, device=device)


def anchor_loss(student: VisionTransformer, reference: VisionTransformer, images: Tensor) -> Tensor:
    """Mean 1 - cosine between two backbones' (B, D, h, w) feature maps of the same images."""
    with torch.no_grad():
        target = reference(images)
    return (1 - F.cosine_similarity(student(images).float(), target.float(), dim=1)).mean()


def adapt(
    parent: PackageDetector,
    unlabeled: Sequence[np.ndarray],
    replay: Sequence[np.ndarray] = (),
    opts: AdaptOptions = AdaptOptions(),
    on_log: Callable[[dict[str, float]], None] | None = None,
) -> TrainingResult:
    """A copy of `parent` whose backbone is adapted by DINO to `unlabeled` (uint8 (3, h, w) frames
    at the model's input size), anchored on `replay`; its heads are `parent`'s."""
    if not len(unlabeled):
        raise ValueError("self-supervised adaptation needs at least one unlabeled frame")
    if opts.head_warmup_steps >= opts.steps:
        raise ValueError(f"head_warmup_steps ({opts.head_warmup_steps}) must be below steps ({opts.steps})")
    threads = torch.get_num_threads()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    try:
        return _adapt(parent, unlabeled, replay, opts, on_log)
    finally:
        torch.set_num_threads(threads)


def _adapt(
    parent: PackageDetector,
    unlabeled: Sequence[np.ndarray],
    replay: Sequence[np.ndarray],
    opts: AdaptOptions,
    on_log: Callable[[dict[str, float]], None] | None,
) -> TrainingResult:
    torch.manual_seed(opts.seed)
    device = _device(opts.device)
    t0 = time.perf_counter()
    cfg = parent.cfg
    reference = copy.deepcopy(parent.backbone).float().to(device).eval().requires_grad_(False)
    head = DinoHead(cfg.backbone.embed_dim, opts.out_dim)
    student = _Student(copy.deepcopy(parent.backbone).float(), head, opts.pooling).to(device).train()
    teacher = copy.deepcopy(student).requires_grad_(False)
    criterion = DinoLoss(opts.out_dim, opts.student_temp).to(device)
    spec = ViewSpec(cfg.input_size, local_size_for(cfg.input_size, cfg.backbone.patch_size), opts.local_crops)
    frames, old = _stack(unlabeled, device), _stack(replay, device)
    groups = [{**g, "lr_scale": 1.0} for g in param_groups(student.backbone, opts.weight_decay)] + [
        {**g, "lr_scale": opts.head_lr / opts.lr} for g in param_groups(student.head, opts.weight_decay)
    ]
    for g in groups:
        g["lr"] = opts.lr * g["lr_scale"]
    opt = torch.optim.AdamW(groups, lr=opts.lr)
    schedule = lr_lambda(opts.warmup_steps, opts.steps)
    gen = torch.Generator().manual_seed(opts.seed)
    n_old = round(opts.batch_size * opts.replay_share) if len(old) else 0
    amp = torch.bfloat16 if device.type == "cuda" and opts.amp else None
    student_params = dict(student.named_parameters())
    history: list[dict[str, float]] = []
    step = 0
    while step < opts.steps:
        if opts.time_limit_s is not None and time.perf_counter() - t0 > opts.time_limit_s:
            log.warning("adaptation stopped by its time limit after %d of %d steps", step, opts.steps)
            break
        backbone_on = step >= opts.head_warmup_steps
        student.backbone.requires_grad_(backbone_on)
        for g in opt.param_groups:
            g["lr"] = opts.lr * g["lr_scale"] * schedule(step)
        new_idx = torch.randint(len(frames), (opts.batch_size - n_old,), generator=gen)
        old_idx = torch.randint(len(old), (n_old,), generator=gen) if n_old else new_idx[:0]
        batch = frames[new_idx.to(device)]
        if n_old:
            batch = torch.cat((batch, old[old_idx.to(device)]))
        views = multi_crop(batch, spec, gen)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            with torch.no_grad():
                t_out = teacher(views[:2])
            s_out = student(views)
            losses = {
                "dino": criterion([s.float() for s in s_out], [t.float() for t in t_out], opts.teacher_temp)
            }
            loss = losses["dino"]
            if n_old and opts.anchor_weight > 0 and backbone_on:
                images = normalize_on_device(old[old_idx.to(device)])
                losses["anchor"] = anchor_loss(student.backbone, reference, images)
                loss = loss + opts.anchor_weight * losses["anchor"]
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"self-supervised adaptation diverged at step {step}: loss {float(loss)}"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in student.parameters() if p.requires_grad], 3.0)
        opt.step()
        m = 1 - (1 - opts.momentum) * (math.cos(math.pi * step / opts.steps) + 1) / 2
        with torch.no_grad():
            for name, p in teacher.named_parameters():
                p.mul_(m).add_(student_params[name].detach(), alpha=1 - m)
        step += 1
        if step % opts.log_every == 0 or step == opts.steps:
            row = {k: float(v.detach()) for k, v in losses.items()}
            row.update(loss=float(loss.detach()), step=step, momentum=m, lr=opts.lr * schedule(step - 1))
            history.append(row)
            if on_log is not None:
                on_log(row)
    model = copy.deepcopy(parent).float()
    model.backbone.load_state_dict({k: v.cpu() for k, v in teacher.backbone.state_dict().items()})
    timings = {"adapt_s": time.perf_counter() - t0, "frames": float(len(frames)), "replay": float(len(old))}
    return TrainingResult(model.eval(), step, history, timings)
