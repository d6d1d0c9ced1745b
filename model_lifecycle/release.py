"""Turn a training run into a complete model version: weights, ONNX, INT8, metrics and card.

`wv model train --save-version DIR` ends here, whatever the data was (simulator, `wv data`, or an
imported dataset): the version is scored on its validation frames (`metrics.json` `eval_torch`),
exported to FP32 and INT8 ONNX calibrated on its own training images with the INT8 parity on the
validation frames (`parity`), and described in `MODEL_CARD.md` (data, starting point, backbone
origin and hash, frozen blocks, metrics). `wv model register DIR` then registers it like any other.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from contract.frames import Frame
from edge.model.version import CARD_FILE, METRICS_FILE, load_detector, read_version, write_metrics


def file_sha256(path: Path | str) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def complete_version(
    version_dir: Path | str,
    validation: Sequence[Frame] | None,
    calibration: Sequence[np.ndarray] | None,
    export: bool = True,
) -> dict[str, Any]:
    """Evaluate, export and describe a freshly written version; returns what went into metrics.json."""
    from edge.backends import EngineSpec
    from edge.backends.torch import TorchEngine
    from model_lifecycle.evaluate import evaluate
    from model_lifecycle.export import export_version

    version = read_version(version_dir)
    out: dict[str, Any] = {}
    if validation is not None and len(validation):
        engine = TorchEngine.for_module(load_detector(version.path), EngineSpec("torch", "fp32"))
        report = evaluate(engine, validation, version.score_threshold, version.iou_threshold).as_dict()
        report["engine"] = "torch"
        write_metrics(version.path, "eval_torch", report)
        out["eval_torch"] = report
    if export:
        out["export"] = export_version(version.path, calibration=calibration, parity_set=validation)
    write_card(version.path)
    return out


def _row(report: dict[str, Any], *keys: str) -> str:
    return " · ".join(f"{k} {report[k]}" for k in keys if k in report)


def write_card(version_dir: Path | str) -> Path:
    """MODEL_CARD.md from the version's config.json (training options) and metrics.json."""
    path = Path(version_dir)
    meta = json.loads((path / "config.json").read_text())
    metrics = json.loads((path / METRICS_FILE).read_text()) if (path / METRICS_FILE).exists() else {}
    opts = meta.get("training", {}).get("options", {})
    model = meta["model"]
    bb = model["backbone"]
    data = opts.get("data_description", {})
    lines = [
        f"# Model card — `{path.name}`",
        "",
        f"Written by `wv model train` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "## Architecture",
        "",
        f"- Config `{model['name']}`: ViT width {bb['embed_dim']}, depth {bb['depth']}, {bb['num_heads']} heads, "
        f"patch {bb['patch_size']}, {bb['num_register_tokens']} registers, {bb['pos_encoding']} positions.",
        f"- Input {model['input_size'][1]}x{model['input_size'][0]} (W x H); frames of any size are stretched to it "
        "(`edge/model/preprocess.py:resize_rgb`) and boxes map back exactly.",
        "",
        "## Data",
        "",
        f"- Training: `{json.dumps(data.get('train', data))}`",
        f"- Validation: `{json.dumps(data.get('validation', 'none'))}`",
        "",
        "## Starting point",
        "",
    ]
    if opts.get("init_version"):
        lines.append(f"- Fine-tuned from model version `{opts['init_version']}`.")
    origin = opts.get("backbone_origin") or {}
    if origin:
        lines.append(
            f"- Backbone weights: `{origin.get('path')}` (sha256 `{origin.get('sha256')}`, "
            f"{origin.get('naming', 'unknown')} naming); load report: {origin.get('report', 'n/a')}."
        )
    if not opts.get("init_version") and not origin:
        lines.append("- Random initialisation (no pretrained weights).")
    if opts.get("freeze_blocks") is not None:
        lines.append(
            f"- Frozen: patch embedding, positions and the first {opts['freeze_blocks']} backbone blocks."
        )
    lines += [
        f"- Steps {opts.get('steps')}, batch {opts.get('batch_size')}, lr {opts.get('lr')}, seed {opts.get('seed')}.",
        "",
        "## Metrics",
        "",
    ]
    if "eval_torch" in metrics:
        lines.append(
            "- Validation (torch): "
            + _row(
                metrics["eval_torch"],
                "frames",
                "packages",
                "map50",
                "condition_accuracy",
                "precision",
                "recall",
            )
        )
    if "parity" in metrics:
        lines.append(
            "- INT8 vs FP32: "
            + _row(metrics["parity"], "fp32_map50", "int8_map50", "condition_agreement", "fp32_mb", "int8_mb")
        )
    if len(lines) and lines[-1] == "":
        lines.append("- Not evaluated (no validation frames).")
    lines += [
        "",
        "## Limits",
        "",
        "- Scores hold for data like the validation frames above only; judge other cameras on their own labelled set",
        "  (`wv model eval VERSION --data DIR`).",
        "",
    ]
    card = path / CARD_FILE
    card.write_text("\n".join(lines))
    return card
