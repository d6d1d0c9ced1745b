"""Model version directories: the immutable unit the edge loads, registers and rolls back.

models/<version>/
  weights.pt        fp16 state dict of PackageDetector (torch.load(weights_only=True))
  config.json       model config, input size, output names, conditions, decode thresholds
  metrics.json      `wv model eval` on the held-out set (+ INT8 parity after `wv model export`)
  MODEL_CARD.md     data recipe, config, training command, metrics, hardware
  model.onnx        FP32 ONNX, dynamic batch (built by `wv model export`, not committed)
  model.int8.onnx   INT8 QDQ ONNX (built by `wv model export`, not committed)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contract.vocabulary import CONDITIONS
from edge.model.config import ModelConfig
from edge.model.postprocess import (
    DEFAULT_IOU_THRESHOLD,
    DEFAULT_SCORE_THRESHOLD,
    INPUT_NAME,
    OUTPUT_NAMES,
)

if TYPE_CHECKING:  # torch stays out of the import: ONNX Runtime edge boxes read versions without it
    import torch

    from edge.model.detector import PackageDetector

WEIGHTS_FILE = "weights.pt"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
CARD_FILE = "MODEL_CARD.md"
ONNX_FILE = "model.onnx"
INT8_ONNX_FILE = "model.int8.onnx"


@dataclass(frozen=True)
class ModelVersion:
    """What a runtime needs to know about a version directory, read from its config.json."""

    path: Path
    config: ModelConfig
    score_threshold: float
    iou_threshold: float

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def input_size(self) -> tuple[int, int]:
        return self.config.input_size

    @property
    def onnx_path(self) -> Path:
        return self.path / ONNX_FILE

    @property
    def int8_onnx_path(self) -> Path:
        return self.path / INT8_ONNX_FILE

    @property
    def weights_path(self) -> Path:
        return self.path / WEIGHTS_FILE


def read_version(path: Path | str) -> ModelVersion:
    path = Path(path)
    meta = json.loads((path / CONFIG_FILE).read_text())
    return ModelVersion(
        path=path,
        config=ModelConfig.from_dict(meta["model"]),
        score_threshold=float(meta["score_threshold"]),
        iou_threshold=float(meta["iou_threshold"]),
    )


def save_version(
    model: PackageDetector, path: Path | str, training: dict[str, Any] | None = None
) -> ModelVersion:
    """Write fp16 weights and config.json (fp16 halves the size; the heads are insensitive to it)."""
    import torch

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float16) for k, v in model.state_dict().items()}
    torch.save(state, path / WEIGHTS_FILE)
    meta = {
        "model": model.cfg.to_dict(),
        "input_name": INPUT_NAME,
        "output_names": list(OUTPUT_NAMES),
        "conditions": list(CONDITIONS),
        "score_threshold": DEFAULT_SCORE_THRESHOLD,
        "iou_threshold": DEFAULT_IOU_THRESHOLD,
        "training": training or {},
    }
    (path / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return read_version(path)


def load_detector(path: Path | str, device: str | torch.device = "cpu") -> PackageDetector:
    """Build a float32 PackageDetector from a version directory or a training checkpoint (.pt)."""
    import torch

    from edge.model.detector import PackageDetector

    path = Path(path)
    if path.is_dir():
        cfg = read_version(path).config
        state = torch.load(path / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    else:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        cfg, state = ModelConfig.from_dict(ckpt["model_config"]), ckpt["model"]
    model = PackageDetector(cfg)
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.to(device).eval()


def write_metrics(path: Path | str, section: str, values: dict[str, Any]) -> None:
    """Merge one section (e.g. `eval`, `parity`) into the version's metrics.json."""
    file = Path(path) / METRICS_FILE
    data = json.loads(file.read_text()) if file.exists() else {}
    data[section] = values
    file.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
