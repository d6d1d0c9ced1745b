"""An edge whose engine runs a plan built for one GPU (TensorRT) takes the model store's plan of its
key or builds it before the version is loaded: keyed, reused on the next load, rebuilt when the
GPU, the library version or the model's content changes; a failed build rejects the version with
the reason and production keeps running; `wv model build-engine` writes the name the edge looks for.

TensorRT cannot be installed here, so the two calls into the library are played by a test plugin
pair, registered the way any engine and builder is: `PlanDoubleBuilder` stands in for TensorRT's
builder (it writes a plan file naming the ONNX graph it was built from) and `PlanDoubleEngine` for
its runtime (it loads only when the plan of its key is on disk, then runs ONNX Runtime). Everything
between them — the key, the lookup, the build step, the rename, stale plans, the verdicts, the
status and the metrics — is the edge's own code.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from typer.testing import CliRunner

from contract.model_pointer import pointer_file, write_pointer
from edge.backends.base import EngineSpec, ModelFiles, ModelLoadError, register
from edge.backends.onnxruntime import OnnxRuntimeEngine
from edge.backends.plan_store import (
    BuildOptions,
    BuildTarget,
    PlanBuilder,
    find_plan,
    plan_path,
    register_builder,
)
from edge.backends.tensorrt_plan import ENGINES_DIR
from edge.config import HotswapConfig, ModelSpec
from edge.hotswap.manager import ModelManager
from edge.pipeline import decode_for
from edge.service import EdgeService
from model_lifecycle.cli import app as model_cli
from tests.edge.hotswap.test_hotswap import verdict, wait_for

ENGINE = "test-plan"
H100, L4 = "NVIDIA H100 80GB HBM3", "NVIDIA L4"


@register_builder
class PlanDoubleBuilder(PlanBuilder):
    """TensorRT's builder on a GPU of `gpu` with library `version` (class state, reset per test)."""

    engine = ENGINE
    gpu, version = H100, "10.9.0"
    fail: str | None = None
    builds: ClassVar[list[Path]] = []
    """The version directories built, in order."""
    status: Path | None = None
    """A manager's status file, read while building (what an operator sees then)."""
    seen: ClassVar[list[str]] = []

    def target(self, device: str) -> BuildTarget:
        return BuildTarget(type(self).gpu, type(self).version)

    def build(
        self,
        onnx: Path,
        dest: Path,
        input_size: tuple[int, int],
        options: BuildOptions,
        calibration: Sequence[np.ndarray] | None = None,
    ) -> None:
        if type(self).status is not None:
            type(self).seen.append(json.loads(type(self).status.read_text())["engine_build"]["state"])
        if type(self).fail:
            raise RuntimeError(type(self).fail)
        dest.write_text(
            json.dumps(
                {"graph": hashlib.sha256(onnx.read_bytes()).hexdigest(), "batches": options.batch_sizes}
            )
        )
        type(self).builds.append(onnx.parent)


@register
class PlanDoubleEngine(OnnxRuntimeEngine):
    """TensorRT's runtime: refuses to load without the plan of its key, else runs the ONNX graph."""

    name = ENGINE

    def __init__(self, model: ModelFiles, spec: EngineSpec) -> None:
        self.plan = find_plan(model, spec.precision, PlanDoubleBuilder().target(spec.device))
        json.loads(self.plan.read_text())  # a half-written plan would not parse
        super().__init__(model, spec)


@pytest.fixture(autouse=True)
def builder() -> Iterator[type[PlanDoubleBuilder]]:
    PlanDoubleBuilder.gpu, PlanDoubleBuilder.version, PlanDoubleBuilder.fail = H100, "10.9.0", None
    PlanDoubleBuilder.builds.clear()
    PlanDoubleBuilder.seen.clear()
    PlanDoubleBuilder.status = None
    yield PlanDoubleBuilder


SPEC = EngineSpec(ENGINE, "fp32", "cuda", threads=1, max_graph_batch=16)


def store(edge_model: Path, tmp_path: Path, *versions: str) -> Path:
    models = tmp_path / "models"
    for name in versions:
        shutil.copytree(edge_model, models / name, ignore=shutil.ignore_patterns(ENGINES_DIR))
    return models


def manager(models: Path, version: str | None = None) -> ModelManager:
    spec = ModelSpec(models_dir=models, default=models / "v1", fallback=None, version=version)
    return ModelManager(SPEC, spec, HotswapConfig(enabled=False), decode_for, models / "status.json")


def plans(version_dir: Path) -> set[str]:
    return {p.name for p in (version_dir / ENGINES_DIR).iterdir()}


def test_a_plan_is_built_under_its_key_and_reused_until_gpu_library_or_model_change(
    edge_model: Path, tmp_path: Path, builder: type[PlanDoubleBuilder]
) -> None:
    models = store(edge_model, tmp_path, "v1")
    v1 = models / "v1"
    first = manager(models, "v1")
    builder.status = models / "status.json"
    h100_plan = plan_path(v1, "fp32", BuildTarget(H100, "10.9.0"), 16)
    try:
        assert first.start().engine.plan == h100_plan  # type: ignore[attr-defined]
        assert builder.builds == [v1] and first.plans == {"built": 1}
        assert builder.seen == ["building_engine"] and first.status()["engine_build"]["state"] == "built"
        gauges = {
            m.name: m.samples[0].value for m in first.collect() if m.samples and not m.samples[0].labels
        }
        assert gauges["wv_edge_engine_building"] == 0.0 and gauges["wv_edge_engine_build_seconds"] >= 0.0
    finally:
        first.stop()

    again = manager(models, "v1")  # a restart, or another edge of this GPU sharing the store
    again.start()
    again.stop()
    assert len(builder.builds) == 1 and again.plans == {"reused": 1}

    builder.gpu = L4
    manager(models, "v1").start().engine.close()
    builder.gpu, builder.version = H100, "10.10.0"
    manager(models, "v1").start().engine.close()
    assert len(builder.builds) == 3
    assert len(plans(v1)) == 3  # the other GPU's and library's plans stay for their edges

    config = json.loads((v1 / "config.json").read_text())
    config["score_threshold"] = 0.4  # retrained under the same name: other content, other key
    (v1 / "config.json").write_text(json.dumps(config))
    retrained = manager(models, "v1")
    retrained.start()
    retrained.stop()
    assert len(builder.builds) == 4 and retrained.plans == {"built": 1}
    assert plans(v1) == {retrained.active.engine.plan.name}  # type: ignore[union-attr]
    # (plans of the old content can never load again)


def test_a_failed_build_rejects_the_new_version_and_production_keeps_running(
    edge_model: Path, tmp_path: Path, builder: type[PlanDoubleBuilder]
) -> None:
    models = store(edge_model, tmp_path, "v1", "v2")
    write_pointer(pointer_file(models), "v1", models / "v1", None)
    edge = manager(models)
    try:
        assert edge.start().version == "v1"
        builder.fail = "out of GPU memory while building"
        write_pointer(pointer_file(models), "v2", models / "v2", "v1")
        edge.poll()
        assert edge.active is not None and edge.active.version == "v1" and edge.candidate is None
        last = edge.status()["verdicts"][-1]
        assert last["version"] == "v2" and last["result"] == "rejected"
        assert "out of GPU memory" in last["reason"] and "kept v1" in last["reason"]
        assert edge.status()["engine_build"]["state"] == "failed"
        assert not (models / "v2" / ENGINES_DIR).exists() or not plans(models / "v2")  # no partial plan
        samples = {m.name: {tuple(s.labels.values()): s.value for s in m.samples} for m in edge.collect()}
        assert samples["wv_edge_engine_plans"] == {("built",): 1.0, ("failed",): 1.0}
        assert json.loads((models / "status.json").read_text())["verdicts"][-1]["result"] == "rejected"
    finally:
        edge.stop()


def test_build_engine_writes_the_plan_the_edge_then_reuses(
    edge_model: Path, tmp_path: Path, builder: type[PlanDoubleBuilder]
) -> None:
    models = store(edge_model, tmp_path, "v1")
    args = [
        "build-engine",
        str(models / "v1"),
        "--engine",
        ENGINE,
        "--precision",
        "fp32",
        "--max-batch",
        "64",
    ]
    result = CliRunner().invoke(model_cli, args)
    assert result.exit_code == 0, result.output
    built = plan_path(models / "v1", "fp32", BuildTarget(H100, "10.9.0"), 64)
    assert builder.builds == [models / "v1"] and built.is_file()
    edge = manager(models, "v1")
    try:
        assert edge.start().engine.plan == built  # type: ignore[attr-defined]
        assert edge.plans == {"reused": 1} and len(builder.builds) == 1
    finally:
        edge.stop()
    refused = CliRunner().invoke(model_cli, ["build-engine", str(models / "v1"), "--engine", "onnxruntime"])
    assert refused.exit_code == 2 and "no plan to build" in refused.output


@pytest.mark.timeout(120)
def test_the_running_edge_builds_the_promoted_version_s_plan_before_its_shadow_run(
    edge_config, edge_model: Path, tmp_path: Path, kafka_bootstrap: str, topic_prefix: str, builder
) -> None:
    models = store(edge_model, tmp_path, "v1", "v2")
    write_pointer(pointer_file(models), "v1", models / "v1", None)
    cfg = edge_config(
        [{"id": "cam-1", "source": "synthetic://seed=41", "policy": "every"}],
        engine={"name": ENGINE, "precision": "fp32"},
        model={"version": None, "models_dir": str(models), "default": str(models / "v1")},
        hotswap={"poll_s": 0.2, "shadow_frames": 6, "shadow_every": 1, "max_latency_ratio": 100.0},
        transport={"kafka_bootstrap": kafka_bootstrap, "topic_prefix": topic_prefix},
    )
    service = EdgeService(cfg)
    service.start()
    try:
        write_pointer(pointer_file(models), "v2", models / "v2", "v1")
        wait_for(lambda: verdict(service, "v2") is not None, timeout=60)
        assert verdict(service, "v2")["result"] == "promoted"
        assert service.manager.active.engine.plan.parent == models / "v2" / ENGINES_DIR
        assert [p.name for p in builder.builds] == ["v1", "v2"]
    finally:
        service.shutdown()
    with pytest.raises(ModelLoadError):  # and the engine itself never loads a version without its plan
        PlanDoubleEngine(ModelFiles.read(models / "v2"), EngineSpec(ENGINE, "int8", "cuda"))
