"""Model hot-swap on the running service: promote after a shadow run, reject a disagreeing or
corrupt version with the reason, roll back after consecutive failures — and lose no frame."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from contract.model_pointer import pointer_file, write_pointer
from edge.service import EdgeService

FAULTY = "test-faulty"  # ONNX Runtime that raises while <version dir>/FAULT exists (tests/edge/conftest.py)


def copy_version(model: Path, name: str) -> Path:
    import shutil

    target = model.parent / name
    shutil.copytree(model, target, dirs_exist_ok=True)
    return target


def point_to(models_dir: Path, version: str, path: Path, previous: str | None = None) -> None:
    """Point the edges at a version, through the registry's own writer."""
    write_pointer(pointer_file(models_dir), version, path, previous)


def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def verdict(service: EdgeService, version: str) -> dict | None:
    return next((v for v in reversed(service.manager.status()["verdicts"]) if v["version"] == version), None)


@pytest.mark.timeout(150)
def test_swap_reject_and_rollback_while_streaming_lose_no_frame(
    edge_config, edge_model, kafka_bootstrap, topic_prefix
):
    models_dir = edge_model.parent / "registry"
    models_dir.mkdir(exist_ok=True)
    v2 = copy_version(edge_model, "v2")
    strict = copy_version(edge_model, "v4-strict")  # same net, far higher score threshold: disagrees
    meta = json.loads((strict / "config.json").read_text())
    meta["score_threshold"] = 0.995
    (strict / "config.json").write_text(json.dumps(meta))
    corrupt = copy_version(edge_model, "v3-corrupt")
    for onnx in corrupt.glob("*.onnx"):
        onnx.write_bytes(onnx.read_bytes()[:4096])

    cfg = edge_config(
        [{"id": "cam-1", "source": "synthetic://seed=41", "policy": "every"}],
        engine={"name": FAULTY},
        model={"version": None, "models_dir": str(models_dir), "default": str(edge_model)},
        hotswap={
            "poll_s": 0.2,
            "shadow_frames": 6,
            "shadow_every": 1,
            "max_failures": 3,
            "max_latency_ratio": 5.0,
        },
        transport={"kafka_bootstrap": kafka_bootstrap, "topic_prefix": topic_prefix},
    )
    service = EdgeService(cfg)
    service.start()
    try:
        assert service.manager.active.version == "v1"
        point_to(models_dir, "v2", v2, previous="v1")
        wait_for(lambda: service.manager.active.version == "v2")
        assert verdict(service, "v2")["result"] == "promoted" and verdict(service, "v2")["agreement"] >= 0.8

        point_to(models_dir, "v4-strict", strict, previous="v2")
        wait_for(lambda: verdict(service, "v4-strict") is not None)
        assert verdict(service, "v4-strict")["result"] == "rejected"
        assert "agreement" in verdict(service, "v4-strict")["reason"]

        point_to(models_dir, "v3-corrupt", corrupt, previous="v2")
        wait_for(lambda: verdict(service, "v3-corrupt") is not None)
        assert verdict(service, "v3-corrupt")["result"] == "load_failed"
        assert service.manager.active.version == "v2"

        frames_before_fault = service.pipeline.counters["frames"]
        (v2 / "FAULT").touch()  # v2 starts raising on every batch
        wait_for(lambda: service.manager.rollbacks == 1)
        assert service.manager.active.version == "v1"
        assert service.runner.counters["primary_errors"] == 3  # rolled back on the 3rd failure
        wait_for(lambda: service.pipeline.counters["frames"] > frames_before_fault + 10)
    finally:
        service.shutdown()
    status = json.loads((cfg.state_dir / "edge" / "FAC-TEST" / "model_status.json").read_text())
    assert status["active"] == "v1" and status["rollbacks"] == 1
    assert {v["result"] for v in status["verdicts"]} == {"promoted", "rejected", "load_failed", "rolled_back"}
    reader = service.cameras["cam-1"].reader
    assert not service.hub.drops  # failed batches were answered by the fallback model
    assert service.pipeline.counters["frames"] == reader.counters["frames"]
