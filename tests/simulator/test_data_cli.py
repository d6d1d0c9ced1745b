"""`wv data generate` / `wv data video` produce usable files."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from simulator.cli import app
from simulator.dataset import ImageDataset


def test_generate_and_video_commands(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["generate", "--out", str(tmp_path / "ds"), "--frames", "3", "--workers", "1", "--seed", "4",
         "--width", "320", "--height", "180", "--drift", "six_weeks_later"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    ds = ImageDataset(tmp_path / "ds")
    assert len(ds) == 3 and ds.meta["drift"]["name"] == "six_weeks_later"
    video = [
        "video",
        "--out",
        str(tmp_path / "v.mp4"),
        "--seconds",
        "0.5",
        "--width",
        "320",
        "--height",
        "180",
    ]
    result = runner.invoke(app, video)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "v.mp4").stat().st_size > 0 and (tmp_path / "v.truth.jsonl").is_file()


def test_unknown_drift_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["generate", "--out", str(tmp_path / "x"), "--drift", "later"])
    assert result.exit_code == 2 and "six_weeks_later" in result.output
