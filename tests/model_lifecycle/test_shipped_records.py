"""The shipped models' records are honest: each model card states what its metrics.json holds, and
building a fresh clone's ONNX files (`make setup`) never rewrites a committed metrics.json."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

MODELS = Path(__file__).resolve().parents[2] / "models"
SHIPPED = sorted(p.parent for p in MODELS.glob("*/metrics.json"))
PARITY = re.compile(
    r"INT8 parity \(`wv model export`, (?P<frames>\d+) held-out frames\): mAP (?P<fp32>[\d.]+) → (?P<int8>[\d.]+)"
)
TORCH_ROW = re.compile(r"\| torch FP32 \| (?P<map>[\d.]+) \| (?P<accuracy>[\d.]+) \|")


@pytest.mark.parametrize("model", SHIPPED, ids=lambda p: p.name)
def test_the_model_card_states_what_metrics_json_holds(model: Path) -> None:
    card = (model / "MODEL_CARD.md").read_text(encoding="utf-8")
    metrics = json.loads((model / "metrics.json").read_text(encoding="utf-8"))
    torch = TORCH_ROW.search(card)
    assert torch is not None, f"{model.name}: the card has no torch FP32 metrics row"
    assert float(torch["map"]) == metrics["eval_torch"]["map50"]
    assert float(torch["accuracy"]) == metrics["eval_torch"]["condition_accuracy"]
    parity = PARITY.search(card)
    if parity is None:
        assert "parity" not in metrics, (
            f"{model.name}: metrics.json has a parity report its card never states"
        )
        return
    recorded = metrics["parity"]
    assert (recorded["frames"], recorded["fp32_map50"], recorded["int8_map50"]) == (
        int(parity["frames"]),
        float(parity["fp32"]),
        float(parity["int8"]),
    )


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_setup_builds_the_shipped_onnx_without_recording_metrics() -> None:
    targets = [f"models/{m.name}/model.int8.onnx" for m in SHIPPED]
    plan = subprocess.run(
        ["make", "-n", "-B", *targets], cwd=MODELS.parent, capture_output=True, text=True, check=True
    ).stdout
    exports = [line for line in plan.splitlines() if " model export " in line]
    assert len(exports) == len(SHIPPED)
    assert all("--no-record" in line for line in exports), exports
