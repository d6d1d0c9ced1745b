"""Fast fine-tuning on a CPU: freeze the first blocks, run them once per frame, train the rest.

A drift-triggered candidate must be ready in about two minutes on two CPU cores, where a full
forward/backward pass of the detector costs ~0.25 s per frame. The early ViT blocks are generic
(edges, texture, colour), so they stay frozen: each training frame goes through them once, in
inference mode and in batches, and their output tokens are cached (fp16, ~93 kB per frame for
`tiny` at 320x192). Training then runs only the last blocks and the heads on the cache, for as many
epochs as the budget allows, each step costing about (depth - frozen) / depth of a full one.

Losses: the task loss of `loss.detection_loss` on every frame (targets from the labels), plus
distillation from the parent on the replay frames only: there the parent is right, so matching it
keeps the frozen test set where it was, while on the drifted frames it is what went wrong.
Each cached frame can carry a mirrored view as well (augmentation cannot happen after the cache).
"""

from __future__ import annotations

import copy
import logging
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from edge.model.detector import PackageDetector
from model_lifecycle.data import CONDITION_INDEX, Sample, collate, normalize_on_device
from model_lifecycle.loss import detection_loss, distillation_loss
from model_lifecycle.train import lr_lambda, param_groups

log = logging.getLogger(__name__)

TEACHER_MAPS = ("objectness", "condition", "embedding")
"""The parent's outputs that distillation reads (cached for the replay frames)."""
TARGETS = ("boxes", "conditions", "skus", "valid")
"""Per-image targets, padded to the largest package count of a batch."""
OK = CONDITION_INDEX["ok"]


@dataclass(frozen=True)
class FinetuneOptions:
    frozen_blocks: int = 10
    """Backbone blocks (and the patch embedding) kept frozen and run once per frame."""
    steps: int = 300
    batch_size: int = 32
    labelled_share: float = 0.5
    """Share of each batch drawn from the labelled (drifted) frames; the rest from the replay slice."""
    damaged_weight: float = 0.0
    """Extra sampling weight of labelled frames that show a damaged package: camera data is mostly
    ``ok``, so without it the rare damage classes are seen too seldom to be relearnt."""
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_steps: int = 20
    distill_weight: float = 1.0
    """Weight of distillation from the parent, on replay frames only."""
    mirror: bool = True
    """Cache a horizontally mirrored view of every frame too (doubles the caching cost)."""
    cache_batch: int = 32
    device: str = "cpu"
    """cpu, cuda or auto (cuda when available)."""
    threads: int | None = 2
    """torch intra-op threads on the CPU while fine-tuning (restored afterwards); None: unchanged."""
    seed: int = 0
    log_every: int = 20
    time_limit_s: float | None = None
    """Stop training early once this much wall time has passed since caching began."""


@dataclass
class TrainingResult:
    """What a fine-tune (or a self-supervised adaptation, ``model_lifecycle.ssl``) returns."""

    model: PackageDetector
    steps: int
    history: list[dict[str, float]]
    timings: dict[str, float] = field(default_factory=dict)
    """Wall and process CPU seconds of caching and training (`cache_s`, `cache_cpu_s`, ...)."""

    @property
    def final_loss(self) -> float | None:
        return self.history[-1]["loss"] if self.history else None


class FeatureCache:
    """Frozen-prefix tokens of a set of samples with their targets and, for distillation, the
    parent's output maps; each sample optionally also mirrored."""

    def __init__(
        self,
        model: PackageDetector,
        samples: Sequence[Sample],
        depth: int,
        batch_size: int = 32,
        mirror: bool = False,
        teacher: bool = False,
    ) -> None:
        device = next(model.parameters()).device
        parts: list[dict[str, Tensor]] = []
        for i in range(0, len(samples), batch_size):
            batch = {k: v.to(device) for k, v in collate(samples[i : i + batch_size]).items()}
            for view in (batch, _mirrored(batch)) if mirror else (batch,):
                parts.append(_encode(model, view, depth, teacher))
        self.tensors = _concat(parts)

    def __len__(self) -> int:
        return int(self.tensors["tokens"].shape[0]) if self.tensors else 0

    @property
    def nbytes(self) -> int:
        return sum(v.numel() * v.element_size() for v in self.tensors.values())

    def weights(self, damaged_weight: float) -> Tensor:
        """Sampling weight per cached view: 1, plus ``damaged_weight`` if it shows damage."""
        damaged = ((self.tensors["conditions"] != OK) & self.tensors["valid"]).any(dim=1)
        return 1.0 + damaged_weight * damaged.float()

    def batch(self, index: Tensor) -> dict[str, Tensor]:
        """Rows `index` of every tensor; empty for an empty index."""
        if not len(index):
            return {}
        index = index.to(self.tensors["tokens"].device)
        return {k: v.index_select(0, index) for k, v in self.tensors.items()}


@torch.inference_mode()
def _encode(model: PackageDetector, batch: dict[str, Tensor], depth: int, teacher: bool) -> dict[str, Tensor]:
    images = normalize_on_device(batch["images"])
    backbone = model.backbone
    tokens = backbone.tokens(images, depth)
    out = {"tokens": tokens.half(), **{k: batch[k] for k in TARGETS}}
    if teacher:
        grid = backbone.patch_grid(images)
        maps = model.predict(backbone.feature_map(backbone.run_blocks(tokens, grid, depth), grid))
        out.update({f"teacher_{k}": maps[k].half() for k in TEACHER_MAPS})
    return out


def _mirrored(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    b = batch["boxes"]
    boxes = torch.stack((1 - b[..., 2], b[..., 1], 1 - b[..., 0], b[..., 3]), dim=-1)
    return {**batch, "images": batch["images"].flip(-1), "boxes": boxes * batch["valid"][..., None]}


def _concat(parts: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Concatenate batches whose targets are padded to different package counts."""
    parts = [p for p in parts if p]
    if not parts:
        return {}
    m = max(p["boxes"].shape[1] for p in parts)
    keys = set.intersection(*(set(p) for p in parts))
    out: dict[str, list[Tensor]] = {k: [] for k in keys}
    for p in parts:
        pad = m - p["boxes"].shape[1]
        for k in keys:
            v = p[k]
            if k in TARGETS and pad:
                v = torch.cat((v, v.new_zeros((v.shape[0], pad, *v.shape[2:]))), dim=1)
            out[k].append(v)
    return {k: torch.cat(v) for k, v in out.items()}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Suffix(nn.Module):
    """The trainable rest of the detector: blocks after the frozen prefix, final norm, heads."""

    def __init__(self, model: PackageDetector, start: int) -> None:
        super().__init__()
        self.model = model
        self.start = start

    def forward(self, tokens: Tensor) -> dict[str, Tensor]:
        backbone = self.model.backbone
        grid = self.model.cfg.grid
        return self.model.predict(backbone.feature_map(backbone.run_blocks(tokens, grid, self.start), grid))


def _draw(
    labelled: Tensor | None, n_replay: int, opts: FinetuneOptions, gen: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Indices of one batch into the labelled cache (drawn by ``labelled`` weights) and the replay cache."""
    k = round(opts.batch_size * opts.labelled_share) if n_replay else opts.batch_size
    k = k if labelled is not None else 0
    none = torch.empty(0, dtype=torch.long)
    lab = (
        torch.multinomial(labelled, k, replacement=True, generator=gen)
        if labelled is not None and k
        else none
    )
    rep = torch.randint(n_replay, (opts.batch_size - k,), generator=gen) if n_replay else none
    return lab, rep


def _device(name: str) -> torch.device:
    return torch.device(
        "cuda" if name == "auto" and torch.cuda.is_available() else name.replace("auto", "cpu")
    )


def finetune(
    parent: PackageDetector,
    labelled: Sequence[Sample],
    replay: Sequence[Sample],
    opts: FinetuneOptions = FinetuneOptions(),
    on_log: Callable[[dict[str, float]], None] | None = None,
) -> TrainingResult:
    """A copy of `parent` fine-tuned on `labelled` (e.g. verified drifted frames) and `replay`
    (frames of the original training distribution), its first `frozen_blocks` blocks unchanged."""
    depth = len(parent.backbone.blocks)
    if not 0 <= opts.frozen_blocks < depth:
        raise ValueError(f"frozen_blocks must be within 0..{depth - 1}, got {opts.frozen_blocks}")
    if not labelled and not replay:
        raise ValueError("fine-tuning needs at least one labelled or replay frame")
    threads = torch.get_num_threads()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    try:
        torch.manual_seed(opts.seed)
        model = copy.deepcopy(parent).float().to(_device(opts.device)).eval()
        t0, c0 = time.perf_counter(), _cpu_seconds()
        depth_args = (opts.frozen_blocks, opts.cache_batch, opts.mirror)
        labelled_cache = FeatureCache(model, labelled, *depth_args)
        replay_cache = FeatureCache(model, replay, *depth_args, teacher=opts.distill_weight > 0)
        t1, c1 = time.perf_counter(), _cpu_seconds()
        limit = None if opts.time_limit_s is None else opts.time_limit_s - (t1 - t0)
        steps, history = train_suffix(model, labelled_cache, replay_cache, opts, on_log, limit)
        t2, c2 = time.perf_counter(), _cpu_seconds()
    finally:
        torch.set_num_threads(threads)
    timings = {
        "cache_s": t1 - t0,
        "cache_cpu_s": c1 - c0,
        "train_s": t2 - t1,
        "train_cpu_s": c2 - c1,
        "cached_views": float(len(labelled_cache) + len(replay_cache)),
        "cache_mb": (labelled_cache.nbytes + replay_cache.nbytes) / 1e6,
    }
    return TrainingResult(model.cpu(), steps, history, timings)


def train_suffix(
    model: PackageDetector,
    labelled: FeatureCache,
    replay: FeatureCache,
    opts: FinetuneOptions,
    on_log: Callable[[dict[str, float]], None] | None = None,
    time_limit_s: float | None = None,
) -> tuple[int, list[dict[str, float]]]:
    """Train `model`'s blocks from `opts.frozen_blocks` on, its final norm and heads, in place, on
    caches made at that depth; returns the steps taken and the logged loss rows."""
    model.requires_grad_(False)
    suffix = _Suffix(model, opts.frozen_blocks)
    for module in (*model.backbone.blocks[opts.frozen_blocks :], model.backbone.norm, model.head):
        module.requires_grad_(True)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(param_groups(model, opts.weight_decay), lr=opts.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(opts.warmup_steps, opts.steps))
    gen = torch.Generator().manual_seed(opts.seed)
    weights = labelled.weights(opts.damaged_weight).cpu() if len(labelled) else None
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    step = 0
    while step < opts.steps:
        if time_limit_s is not None and time.perf_counter() - t0 > time_limit_s:
            log.warning("fine-tuning stopped by its time limit after %d of %d steps", step, opts.steps)
            break
        i_lab, i_rep = _draw(weights, len(replay), opts, gen)
        lab, rep = labelled.batch(i_lab), replay.batch(i_rep)
        batch = _concat([lab, rep])
        out = suffix(batch["tokens"].float())
        losses = detection_loss(out, batch)
        loss = losses["loss"]
        if "teacher_objectness" in rep:
            student = {k: out[k][len(i_lab) :] for k in TEACHER_MAPS}
            teacher = {k: rep[f"teacher_{k}"].float() for k in TEACHER_MAPS}
            losses["distill"] = distillation_loss(student, teacher)
            loss = loss + opts.distill_weight * losses["distill"]
        if not torch.isfinite(loss):
            raise FloatingPointError(f"fine-tuning diverged at step {step}: loss {float(loss)}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        sched.step()
        step += 1
        if step % opts.log_every == 0 or step == opts.steps:
            row = {k: float(v.detach()) for k, v in losses.items()}
            row.update(step=step, lr=float(sched.get_last_lr()[0]))
            history.append(row)
            if on_log is not None:
                on_log(row)
    model.requires_grad_(True)
    model.eval()
    return step, history
