"""`wv model eval` on the shipped default model, as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from edge.model.cli import app

ROOT = Path(__file__).resolve().parents[3]


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
