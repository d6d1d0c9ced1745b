"""The shipped model and a deliberately worse copy of it, for the promotion-gate tests."""

import shutil
from pathlib import Path

import pytest

DEFAULT_MODEL = Path(__file__).resolve().parents[3] / "models" / "default"


@pytest.fixture(scope="session")
def shipped_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models/default with its ONNX and INT8 files (exported here when the checkout lacks them)."""
    from model_lifecycle.export import export_version

    if (DEFAULT_MODEL / "model.int8.onnx").exists():
        return DEFAULT_MODEL
    target = tmp_path_factory.mktemp("shipped") / "default"
    target.mkdir()
    for name in ("weights.pt", "config.json"):
        shutil.copy(DEFAULT_MODEL / name, target / name)
    export_version(target, calibration_frames=8)
    return target


def _damaged_copy(source: Path, target: Path) -> Path:
    """The default model with its 'ok' and 'wet' outputs swapped: a deliberately worse model."""
    import torch

    from edge.model.version import load_detector, save_version
    from model_lifecycle.export import export_version

    model = load_detector(source)
    with torch.no_grad():
        for tensor in (model.head.condition.weight, model.head.condition.bias):
            assert tensor is not None
            tensor[[0, 3]] = tensor[[3, 0]].clone()
    save_version(model, target)
    export_version(target, calibration_frames=4)
    return target


@pytest.fixture(scope="session")
def damaged_model(tmp_path_factory: pytest.TempPathFactory, shipped_model: Path) -> Path:
    return _damaged_copy(shipped_model, tmp_path_factory.mktemp("damaged") / "damaged")
