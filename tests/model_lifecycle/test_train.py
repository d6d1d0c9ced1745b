"""Training actually learns, resumes where it stopped, distils, and runs under torchrun (gloo, 2 ranks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from contract.frames import Frame
from edge.model.config import get_config
from edge.model.detector import PackageDetector
from edge.model.version import load_detector, save_version
from model_lifecycle.data import CachedSamples, FrameDataset, frame_to_sample
from model_lifecycle.sources import SimulatedFrames
from model_lifecycle.train import TrainOptions, train

from .conftest import SMALL_INPUT

ROOT = Path(__file__).resolve().parents[2]


def options(out: Path, **kw: object) -> TrainOptions:
    base = dict(
        out_dir=out, config="fallback", input_size=SMALL_INPUT, batch_size=4, lr=2e-3, warmup_steps=5,
        workers=0, device="cpu", wandb=False, progress=False, log_every=1,
    )  # fmt: skip
    return TrainOptions(**{**base, **kw})  # type: ignore[arg-type]


def test_overfits_a_few_frames(tmp_path: Path, sim_frames: list[Frame]) -> None:
    data = CachedSamples([frame_to_sample(f, SMALL_INPUT) for f in sim_frames[:4]])
    result = train(options(tmp_path, steps=30), data)
    losses = [row["loss"] for row in result.history]
    assert result.step == 30 and len(losses) == 30
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5, losses


def test_resume_continues_the_step_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WV_STATE_DIR", str(tmp_path / "state"))
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)
    data = FrameDataset(SimulatedFrames(seed=5), 8, SMALL_INPUT)
    first = train(options(tmp_path / "run", steps=3, checkpoint_every=3, wandb=True), data)
    assert first.step == 3
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["step"] == 3 and ckpt["model_config"]["name"] == "fallback"
    second = train(options(tmp_path / "run", steps=5, checkpoint_every=3, resume=True), data)
    assert second.step == 5
    assert [row["step"] for row in second.history] == [4, 5]
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["step"] == 5
    # W&B wrote its offline run under the local state folder, not $HOME
    assert list((tmp_path / "state" / "wandb").rglob("offline-run-*"))


def test_distillation_from_a_teacher_version(tmp_path: Path, sim_frames: list[Frame]) -> None:
    teacher = save_version(
        PackageDetector(get_config("fallback").with_input_size(*SMALL_INPUT)), tmp_path / "t"
    )
    data = CachedSamples([frame_to_sample(f, SMALL_INPUT) for f in sim_frames[:4]])
    result = train(options(tmp_path / "s", steps=2, teacher=teacher.path), data)
    assert all(torch.isfinite(torch.tensor(row["distill"])) for row in result.history)
    assert load_detector(tmp_path / "s" / "checkpoints" / "last.pt").cfg.input_size == SMALL_INPUT


def test_ddp_gloo_two_processes(tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "model_lifecycle.cli", "train", "--config", "fallback", "--input-size", "128x224",
        "--steps", "3", "--batch-size", "2", "--frames", "8", "--workers", "0", "--device", "cpu",
        "--no-wandb", "--no-progress", "--log-every", "1", "--out", str(out),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]  # rank 0 alone logs
    assert torch.load(out / "checkpoints" / "last.pt", weights_only=True)["step"] == 3
