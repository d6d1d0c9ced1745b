"""An edge follows a canary that names its facility or every one of its cameras, and goes back to
the production pointer's version when the canary ends; other edges never load it."""

from __future__ import annotations

import shutil
from pathlib import Path

from contract.canary_pointer import Canary, canary_file, clear_canary, write_canary
from contract.model_pointer import pointer_file, write_pointer
from edge.backends.base import EngineSpec
from edge.config import HotswapConfig, ModelSpec
from edge.hotswap.manager import ModelManager
from edge.pipeline import decode_for


def manager(models_dir: Path, default: Path, facility: str, cameras: list[str]) -> ModelManager:
    spec = ModelSpec(models_dir=models_dir, default=default, fallback=None)
    hotswap = HotswapConfig(enabled=False)  # the test polls by hand
    return ModelManager(
        EngineSpec(precision="int8", threads=1), spec, hotswap, decode_for, scope=(facility, cameras)
    )


def test_only_the_edges_a_canary_names_follow_it_and_all_return_when_it_ends(
    edge_model: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    production, trial = models / "v1", models / "v2"
    shutil.copytree(edge_model, production)
    shutil.copytree(edge_model, trial)
    write_pointer(pointer_file(models), "v1", production, None)
    write_canary(
        canary_file(models), Canary("v2", trial, facilities=("FAC-002",), cameras=("FAC-001/cam-2",))
    )

    named = manager(models, production, "FAC-002", ["cam-1", "cam-2"])
    partly = manager(models, production, "FAC-001", ["cam-1", "cam-2"])  # one engine for both cameras
    one_camera = manager(models, production, "FAC-001", ["cam-2"])
    try:
        assert named.start().version == "v2"
        assert partly.start().version == "v1"
        assert one_camera.start().version == "v2"

        clear_canary(canary_file(models))
        for edge in (named, partly, one_camera):
            edge.poll()
        assert (
            named.candidate is not None and named.candidate.version == "v1"
        )  # shadow-run back to production
        assert partly.candidate is None and partly.active is not None and partly.active.version == "v1"
    finally:
        for edge in (named, partly, one_camera):
            edge.stop()
