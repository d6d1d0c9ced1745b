"""Straggler fallback with a slow primary engine: late batches are answered by the fallback model
and flagged; a primary that is only a little late supersedes the fallback result."""

from __future__ import annotations

import time

import pytest

from contract.proto import warehouse_vision_pb2 as pb
from edge.backends.base import engine_class
from edge.service import EdgeService

SLOW = "test-slow"  # ONNX Runtime sleeping on every 3rd call (tests/edge/conftest.py)


def run_for(service: EdgeService, seconds: float) -> float:
    """Run the service; returns the fallback rate its metrics endpoint reported before stopping."""
    service.start()
    try:
        time.sleep(seconds)
        return service.metrics.registry.get_sample_value("wv_edge_fallback_rate") or 0.0
    finally:
        service.shutdown()


@pytest.mark.timeout(90)
def test_a_primary_missing_the_budget_is_replaced_by_the_flagged_fallback_result(
    edge_config, collect, kafka_bootstrap, topic_prefix, monkeypatch
):
    monkeypatch.setattr(engine_class(SLOW), "delay_s", 0.35)  # far past the 200 ms budget
    cfg = edge_config(
        [{"id": "cam-1", "source": "synthetic://seed=51", "policy": "latest"}],
        engine={"name": SLOW},
        budgets={"latency_ms": 200, "inference_deadline_ms": 45},
        transport={"kafka_bootstrap": kafka_bootstrap, "topic_prefix": topic_prefix},
        decisions={"detection_sample_rate": 1.0},
    )
    collector = collect(kafka_bootstrap, f"{topic_prefix}detections")
    service = EdgeService(cfg)
    fallback_rate = run_for(service, 4)
    c = service.runner.counters
    assert c["fallback_emitted"] >= 2 and c["primary_late"] >= 1
    assert c["primary_errors"] == 0
    assert collector.wait(lambda: len(collector.events) >= service.outbox.counters["written"], 20)
    detections = [e for e in collector.events if e.kind == pb.EVENT_KIND_DETECTION]
    assert {e.fallback for e in detections} == {True, False}  # per-frame results say who answered
    assert fallback_rate > 0


@pytest.mark.timeout(90)
def test_a_primary_late_for_the_deadline_but_inside_the_budget_supersedes_the_fallback(
    edge_config, kafka_bootstrap, topic_prefix, monkeypatch
):
    monkeypatch.setattr(engine_class(SLOW), "delay_s", 0.07)  # past the 45 ms deadline only
    cfg = edge_config(
        [{"id": "cam-1", "source": "synthetic://seed=52", "policy": "latest"}],
        engine={"name": SLOW},
        budgets={"latency_ms": 400, "inference_deadline_ms": 45},
        transport={"kafka_bootstrap": kafka_bootstrap, "topic_prefix": topic_prefix},
    )
    service = EdgeService(cfg)
    run_for(service, 3)
    c = service.runner.counters
    assert c["fallback_runs"] >= 2 and c["superseded"] >= 2
    assert c["fallback_emitted"] <= c["fallback_runs"] - c["superseded"]
