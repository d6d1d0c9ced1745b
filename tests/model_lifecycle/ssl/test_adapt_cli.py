"""`wv model adapt` on a folder of sampled frames writes a loadable version with the same heads."""

from pathlib import Path

import torch
from typer.testing import CliRunner

from edge.model.detector import PackageDetector
from edge.model.version import load_detector, save_version
from model_lifecycle.cli import app


def test_adapt_writes_an_adapted_version_from_a_frames_folder(
    tmp_path: Path, small_detector: PackageDetector, frames_dir: Path
) -> None:
    save_version(small_detector, tmp_path / "base")
    out = tmp_path / "adapted"
    args = ["adapt", str(tmp_path / "base"), "--frames", str(frames_dir), "--out", str(out),
            "--steps", "3", "--batch-size", "2", "--replay-frames", "0", "--device", "cpu"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "adapted model written" in result.output
    base, adapted = load_detector(tmp_path / "base"), load_detector(out)
    assert torch.equal(base.head.condition.weight, adapted.head.condition.weight)


def test_adapt_names_a_missing_frames_folder(tmp_path: Path, small_detector: PackageDetector) -> None:
    save_version(small_detector, tmp_path / "base")
    args = [
        "adapt",
        str(tmp_path / "base"),
        "--frames",
        str(tmp_path / "nowhere"),
        "--out",
        str(tmp_path / "o"),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "nowhere: no such folder of unlabeled frames" in result.output
