"""``backbone_adaptation`` adapts production's backbone to the collected frames; its blocking check
decides whether ``candidate_model`` may start from the result."""

import json
import uuid
from pathlib import Path
from typing import Any

import cv2
import dagster as dg
import numpy as np
import psycopg
import pytest
import torch

from assets.retraining.adaptation import adapted_start, backbone_adaptation
from edge.model.config import get_config
from edge.model.detector import PackageDetector
from edge.model.version import save_version
from realtime.storage.model_registry import ModelRegistry

SMALL = {"cpu_steps": 2, "cpu_batch_size": 2, "replay_frames": 2, "test_frames": 4, "device": "cpu"}


@pytest.fixture
def adaptation_resources(
    resources: dict[str, Any], database_url: str, db: psycopg.Connection, tmp_path: Path
) -> dict[str, Any]:
    """A two-block production model in an emptied registry and one collected facility-day of frames."""
    registry = ModelRegistry(database_url, tmp_path / "models")
    version = f"small-{uuid.uuid4().hex[:8]}"
    torch.manual_seed(0)
    save_version(
        PackageDetector(get_config("fallback").with_input_size(64, 96)), tmp_path / "models" / version
    )
    registry.register(version, tmp_path / "models" / version, "fallback")
    registry.approve(version, by="model-engineer")
    root = tmp_path / "frames"
    files = []
    for i in range(4):
        rel = f"FAC-001/cam-1/2026-12-01/0900{i:02d}.000000-{i}.jpg"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / rel), np.random.default_rng(i).integers(0, 255, (90, 160, 3), dtype=np.uint8))
        files.append(rel)
    manifest = resources["settings"].state_dir / "datasets" / "unlabeled" / "FAC-001" / "2026-12-01.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"root": str(root), "frames": {"cam-1": files}}))
    return resources


def _adapt(resources: dict[str, Any], **config: Any) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [backbone_adaptation],
        resources=resources,
        run_config={"ops": {"backbone_adaptation": {"config": {**SMALL, **config}}}},
        raise_on_error=False,
    )


def test_only_an_adaptation_that_keeps_frozen_accuracy_is_what_candidate_model_may_start_from(
    adaptation_resources: dict[str, Any],
) -> None:
    models = Path(adaptation_resources["model_registry"].models_dir)
    with pytest.raises(dg.Failure, match="no adapted backbone"):
        adapted_start(models, "any")
    passing = _adapt(adaptation_resources, frozen_tolerance=1.0)
    assert passing.success
    (check,) = passing.get_asset_check_evaluations()
    assert check.passed and check.check_name == "adapted_backbone_keeps_frozen_accuracy"
    metadata = passing.asset_materializations_for_node("backbone_adaptation")[0].metadata
    assert metadata["unlabeled_frames"].value == 4 and metadata["steps"].value == 2
    production, path = metadata["adapted_from"].value, Path(metadata["path"].value)
    assert adapted_start(models, production) == path
    with pytest.raises(dg.Failure, match=f"was made from {production}, production is newer"):
        adapted_start(models, "newer")

    failing = _adapt(adaptation_resources, frozen_tolerance=-1.0)  # nothing can gain 100 points
    (check,) = failing.get_asset_check_evaluations()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert adapted_start(models, production) == path  # still the one that passed
