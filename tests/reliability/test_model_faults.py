"""Model faults on a running edge: an engine that starts raising is rolled back within a few
frames, a corrupt model file is refused, and the service keeps streaming to the database."""

from __future__ import annotations

import psycopg
import pytest

from bench.reliability.faults import corrupt_file, wait_until
from bench.reliability.journaled_edge import FAULT_MARKER
from bench.reliability.models import has_verdict, make_version, model_status, point_to
from bench.reliability.pipeline import wait_stored

FACILITY = "FAC-002"
MAX_FAILURES = 3
MAX_BATCH = 4


def versions_stored(database_url: str) -> set[str]:
    with psycopg.connect(database_url) as conn:
        return {r[0] for r in conn.execute("SELECT DISTINCT model_version FROM package_detections")}


@pytest.mark.timeout(180)
def test_failing_engine_rolls_back_and_corrupt_model_is_refused_while_events_keep_flowing(
    pipeline, broker, endpoints_for, database_url, tmp_path, model_dir
):
    models = tmp_path / "models"
    v1 = make_version(models, "v1", model_dir)
    point_to(models, "v1", None)
    endpoints = endpoints_for(broker)
    pipeline.ingest(endpoints)
    edge = pipeline.edge(
        FACILITY,
        endpoints,
        cameras=["synthetic://seed=19&fps=10"],
        engine={"name": "wv-fault-injecting"},
        model={"models_dir": str(models), "default": str(v1), "fallback": None},
        # The latency gate is not under test: on a shared box the shadow run's p95 is noise.
        hotswap={
            "poll_s": 0.3,
            "shadow_frames": 8,
            "shadow_every": 1,
            "max_failures": MAX_FAILURES,
            "max_latency_ratio": 100.0,
        },
        budgets={"max_batch": MAX_BATCH},
    )
    status = edge.model_status_path
    pipeline.start(wait_events=30)

    make_version(models, "v2", model_dir)
    point_to(models, "v2", "v1")
    wait_until(lambda: has_verdict(status, "v2", "promoted"), 60, "v2 promoted after its shadow run")
    edge.wait_written(edge.written() + 20)

    (models / "v2" / FAULT_MARKER).touch()  # v2 starts raising on every batch
    wait_until(lambda: has_verdict(status, "v2", "rolled_back"), 30, "rollback from the failing v2")
    assert model_status(status)["active"] == "v1"
    failed = edge.metric("wv_edge_frames_dropped_total", reason="inference_failed")
    assert 0 < failed <= MAX_FAILURES * MAX_BATCH, "rollback within max_failures batches"

    v3 = make_version(models, "v3", model_dir)
    corrupt_file(v3 / "model.onnx")
    point_to(models, "v3", "v1")
    wait_until(lambda: has_verdict(status, "v3", "load_failed"), 30, "corrupt v3 refused")
    assert model_status(status)["active"] == "v1"

    written = edge.written()
    edge.wait_written(written + 40)  # still streaming on v1
    assert edge.process.stop() == 0
    ledger = wait_stored(pipeline.journals, database_url, [FACILITY], 60)
    assert not ledger.lost and ledger.duplicated == 0 and not ledger.extra, ledger.summary()
    assert {"v1", "v2"} <= versions_stored(database_url)
    assert "v3" not in versions_stored(database_url)
