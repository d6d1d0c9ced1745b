"""`wv model eval` and `wv model export` on the shipped default model, as a user runs them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from model_lifecycle.cli import app

ROOT = Path(__file__).resolve().parents[2]


def test_eval_json_on_the_shipped_model() -> None:
    result = CliRunner().invoke(app, ["eval", str(ROOT / "models" / "default"), "--frames", "6", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["heldout_seed"] == 9001 and report["frames"] == 6 and report["packages"] > 30
    assert report["map50"] >= 0.9 and report["condition_accuracy"] >= 0.9
    assert set(report["per_condition"]) == {"ok", "crushed", "torn", "wet", "open"}


def test_eval_table_lists_metrics_and_conditions() -> None:
    result = CliRunner().invoke(app, ["eval", str(ROOT / "models" / "default"), "--frames", "2"])
    assert result.exit_code == 0, result.output
    assert "map50" in result.output and "condition_accuracy" in result.output and "crushed" in result.output


def test_export_without_record_builds_the_engines_and_leaves_the_metrics_file_alone(tmp_path: Path) -> None:
    version = tmp_path / "default"
    shutil.copytree(ROOT / "models" / "default", version, ignore=shutil.ignore_patterns("*.onnx"))
    before = (version / "metrics.json").read_bytes()

    args = ["export", str(version), "--calibration-frames", "4", "--parity-frames", "2", "--json"]
    result = CliRunner().invoke(app, [*args, "--no-record"])

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["frames"] == 2
    assert (version / "model.int8.onnx").exists() and (version / "metrics.json").read_bytes() == before
    assert CliRunner().invoke(app, args).exit_code == 0
    assert json.loads((version / "metrics.json").read_text())["parity"]["frames"] == 2
