"""Training loop: single process (CPU/CUDA) or DistributedDataParallel under `torchrun`.

Deterministic given the options: model init from `seed`, data from the simulator seed and the
frame index, batch order from a seeded DistributedSampler, augmentation from a per-step generator.
A checkpoint holds model, optimiser, schedule and step; `--resume` continues from `last.pt`
(skipping the batches of the interrupted epoch that were already seen).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Sized
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from edge.model.config import ModelConfig, get_config
from edge.model.detector import PackageDetector
from edge.model.version import load_detector
from model_lifecycle.data import CachedSamples, collate, normalize_on_device, passthrough
from model_lifecycle.loss import detection_loss, distillation_loss

log = logging.getLogger(__name__)


@dataclass
class TrainOptions:
    out_dir: Path
    config: str = "tiny"
    input_size: tuple[int, int] | None = None
    steps: int = 3000
    batch_size: int = 64
    """Per process; the global batch is batch_size x world size."""
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 200
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    workers: int = 2
    checkpoint_every: int = 500
    log_every: int = 20
    resume: bool = False
    teacher: Path | None = None
    distill_weight: float = 1.0
    init_checkpoint: Path | None = None
    """DINOv2/DINOv3 backbone weights loaded through `checkpoints.load_backbone` before training."""
    model_config: dict[str, Any] | None = None
    """A full `ModelConfig.to_dict()` (e.g. a backbone shaped like the checkpoint); overrides `config`."""
    init_version: Path | None = None
    """Start from a model version's (or training checkpoint's) weights: fine-tuning on new data."""
    freeze_blocks: int | None = None
    """Keep the patch embedding, positions and the first N backbone blocks fixed (N >= depth: the
    whole backbone, heads only)."""
    backbone_origin: dict[str, Any] = field(default_factory=dict)
    """Where `init_checkpoint` came from (path, sha256, naming, load report), for the model card."""
    wandb: bool = True
    progress: bool = True
    """Rich progress bar; without it each log row is printed as a JSON line."""
    time_limit_s: float | None = None
    """Stop early (with a checkpoint) once this much wall time has passed: a guard for leased GPUs."""
    data_description: dict[str, Any] = field(default_factory=dict)
    """How the training frames were made (recorded in checkpoints and the model card)."""


@dataclass
class TrainResult:
    out_dir: Path
    step: int
    history: list[dict[str, float]]


class ResumableSampler(DistributedSampler):
    """DistributedSampler that can skip the first `skip` indices of an epoch (for exact resume)."""

    skip = 0

    def __iter__(self) -> Iterator[int]:
        it = super().__iter__()
        for _ in range(self.skip):
            next(it)
        return it


def state_dir() -> Path:
    # The rule of foundation.settings.StateSettings (WV_STATE_DIR, default .local), read directly:
    # torchrun workers and the W&B set-up need the folder before any settings model is loaded.
    return Path(os.environ.get("WV_STATE_DIR", ".local"))


def _setup_distributed(device_opt: str) -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_opt == "cuda" or (device_opt == "auto" and torch.cuda.is_available())
    device = torch.device(f"cuda:{local}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return rank, world, device


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_vector = p.ndim <= 1 or name.endswith(("cls_token", "pos_embed", "register_tokens"))
        (no_decay if is_vector else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def freeze_backbone(model: PackageDetector, blocks: int) -> list[str]:
    """Fix the patch embedding, the position/cls/register tokens and the first `blocks` blocks (all
    of the backbone, final norm included, when `blocks` >= depth); returns the frozen names."""
    bb = model.backbone
    depth = len(bb.blocks)
    if blocks < 0:
        raise ValueError(f"--freeze-backbone takes a block count >= 0, got {blocks}")
    modules: list[nn.Module] = [bb.patch_embed, *bb.blocks[: min(blocks, depth)]]
    if blocks >= depth:
        modules.append(bb.norm)
    for m in modules:
        m.requires_grad_(False)
    for name in ("cls_token", "pos_embed", "register_tokens"):
        p = getattr(bb, name, None)
        if isinstance(p, nn.Parameter):
            p.requires_grad_(False)
    return [n for n, p in model.named_parameters() if not p.requires_grad]


def lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return f


def augment(
    images: torch.Tensor, boxes: torch.Tensor, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random horizontal flip and brightness/contrast jitter on [0, 255] float images (on device)."""
    b = images.shape[0]
    dev = images.device
    flip = torch.rand(b, generator=gen).to(dev) < 0.5
    images = torch.where(flip.view(b, 1, 1, 1), images.flip(-1), images)
    flipped = torch.stack((1 - boxes[..., 2], boxes[..., 1], 1 - boxes[..., 0], boxes[..., 3]), dim=-1)
    boxes = torch.where(flip.view(b, 1, 1), flipped, boxes)
    gain = (1 + (torch.rand(b, generator=gen) - 0.5) * 0.4).to(dev).view(b, 1, 1, 1)
    bias = ((torch.rand(b, generator=gen) - 0.5) * 40).to(dev).view(b, 1, 1, 1)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return ((images - mean) * gain + mean + bias).clamp(0, 255), boxes


def _checkpoint_dir(out_dir: Path) -> Path:
    return out_dir / "checkpoints"


def _save_checkpoint(
    path: Path,
    model: nn.Module,
    cfg: ModelConfig,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    step: int,
    opts: TrainOptions,
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "model": model.state_dict(),
        "model_config": cfg.to_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "step": step,
        "options": json.loads(json.dumps(asdict(opts), default=str)),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def _init_wandb(opts: TrainOptions) -> Any:
    """Offline W&B run under the local state folder; None when disabled or wandb is not installed."""
    if not opts.wandb:
        return None
    try:
        import wandb
    except ImportError:
        log.warning("wandb is not installed; training metrics go to train_log.jsonl only")
        return None
    root = (state_dir() / "wandb").resolve()
    for var, sub in (("WANDB_DIR", ""), ("WANDB_CACHE_DIR", "cache"), ("WANDB_DATA_DIR", "data")):
        os.environ.setdefault(var, str(root / sub))
        Path(os.environ[var]).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    return wandb.init(
        project="warehouse-vision",
        name=opts.out_dir.name,
        dir=os.environ["WANDB_DIR"],
        config=json.loads(json.dumps(asdict(opts), default=str)),
    )


def _progress(enabled: bool, total: int, start: int) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    prog = Progress(
        TextColumn("[bold]train"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
        disable=not enabled,
    )
    task = prog.add_task("train", total=total, completed=start, info="")
    return prog, task


def _out_of_time(t_start: float, limit_s: float, world: int, device: torch.device) -> bool:
    """Rank 0's clock decides, so every rank stops after the same step."""
    flag = torch.tensor([time.perf_counter() - t_start > limit_s], dtype=torch.int32, device=device)
    if world > 1:
        dist.broadcast(flag, src=0)
    return bool(flag.item())


def train(opts: TrainOptions, dataset: Dataset) -> TrainResult:
    """Train on `dataset` (samples as in `data.Sample`) for `opts.steps` optimiser steps."""
    rank, world, device = _setup_distributed(opts.device)
    torch.manual_seed(opts.seed)
    np.random.seed(opts.seed)
    cfg = ModelConfig.from_dict(opts.model_config) if opts.model_config else get_config(opts.config)
    if opts.input_size:
        cfg = cfg.with_input_size(*opts.input_size)
    model = PackageDetector(cfg)
    if opts.init_version:
        model.load_state_dict(load_detector(opts.init_version).state_dict())
    if opts.init_checkpoint:
        from model_lifecycle.checkpoints import load_backbone

        strict = bool(opts.backbone_origin.get("strict"))
        report = load_backbone(model.backbone, opts.init_checkpoint, strict=strict)
        opts.backbone_origin["report"] = report.summary()
        if rank == 0:
            log.info("backbone init: %s", report.summary())
    if opts.freeze_blocks is not None:
        freeze_backbone(model, opts.freeze_blocks)
    model.to(device)
    opt = torch.optim.AdamW(param_groups(model, opts.weight_decay), lr=opts.lr, betas=(0.9, 0.999))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(opts.warmup_steps, opts.steps))
    step = 0
    last = _checkpoint_dir(opts.out_dir) / "last.pt"
    if opts.resume and last.exists():
        ckpt = torch.load(last, map_location="cpu", weights_only=True)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        step = int(ckpt["step"])
    teacher = load_detector(opts.teacher, device) if opts.teacher else None
    if teacher is not None:
        teacher.requires_grad_(False)

    net: nn.Module = model
    if world > 1:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    sampler = ResumableSampler(
        dataset, num_replicas=world, rank=rank, shuffle=True, seed=opts.seed, drop_last=True
    )
    cached = isinstance(dataset, CachedSamples)
    workers = 0 if cached else opts.workers
    loader = DataLoader(
        dataset,
        batch_size=opts.batch_size,
        sampler=sampler,
        collate_fn=cast(Callable[[list[Any]], Any], passthrough if cached else collate),
        num_workers=workers,
        pin_memory=device.type == "cuda" and not cached,
        drop_last=True,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
    )
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise ValueError(
            f"{len(cast(Sized, dataset))} frames over {world} processes is less than one batch of {opts.batch_size}"
        )
    amp_dtype = torch.bfloat16 if device.type == "cuda" and opts.amp else None
    is_main = rank == 0
    run = _init_wandb(opts) if is_main else None
    history: list[dict[str, float]] = []
    log_file = opts.out_dir / "train_log.jsonl"
    if is_main:
        opts.out_dir.mkdir(parents=True, exist_ok=True)
    prog, task = _progress(opts.progress and is_main, opts.steps, step)
    net.train()
    t_start = t_last = time.perf_counter()
    n_last = 0
    stop = False
    with prog:
        while step < opts.steps and not stop:
            epoch = step // steps_per_epoch
            sampler.set_epoch(epoch)
            sampler.skip = (step % steps_per_epoch) * opts.batch_size
            for batch in loader:
                gen = torch.Generator().manual_seed(opts.seed * 1_000_003 + step * 101 + rank)
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                images, batch["boxes"] = augment(batch["images"].float(), batch["boxes"], gen)
                images = normalize_on_device(images)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    out = net(images)
                    losses = detection_loss(out, batch)
                    loss = losses["loss"]
                    if teacher is not None:
                        with torch.no_grad():
                            t_out = teacher(images)
                        losses["distill"] = distillation_loss(out, t_out)
                        loss = loss + opts.distill_weight * losses["distill"]
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
                opt.step()
                sched.step()
                step += 1
                n_last += images.shape[0] * world
                if is_main and (step % opts.log_every == 0 or step == opts.steps):
                    now = time.perf_counter()
                    row = {k: float(v.detach()) for k, v in losses.items()}
                    row.update(
                        step=step, lr=float(sched.get_last_lr()[0]), images_per_s=n_last / (now - t_last)
                    )
                    t_last, n_last = now, 0
                    history.append(row)
                    with log_file.open("a") as f:
                        f.write(json.dumps(row) + "\n")
                    if run is not None:
                        run.log(row, step=step)
                    if not opts.progress:
                        print(json.dumps({k: round(v, 5) for k, v in row.items()}), flush=True)
                    info = " ".join(f"{k} {row[k]:.3f}" for k in ("loss", "obj", "box", "cond"))
                    prog.update(task, info=info)
                if opts.time_limit_s is not None:
                    stop = _out_of_time(t_start, opts.time_limit_s, world, device)
                if is_main:
                    prog.update(task, completed=step)
                    if step % opts.checkpoint_every == 0 or step == opts.steps or stop:
                        _save_checkpoint(last, model, cfg, opt, sched, step, opts)
                        if step % opts.checkpoint_every == 0:
                            ckpt_path = _checkpoint_dir(opts.out_dir) / f"step_{step:06d}.pt"
                            _save_checkpoint(ckpt_path, model, cfg, opt, sched, step, opts)
                if step >= opts.steps or stop:
                    break
    if run is not None:
        run.finish()
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return TrainResult(opts.out_dir, step, history)
