"""The shipped fallback in use, end to end: an edge whose primary is sometimes far too slow answers
those batches with `models/fallback`, then supersedes the fallback's detections with the primary's
late result; the central service stores both, marks the provisional rows, counts nothing twice."""

from __future__ import annotations

import pytest

from edge.backends.base import engine_class
from edge.service import EdgeService
from realtime.storage.facilities import ensure_cameras

SLOW = "test-slow"  # ONNX Runtime sleeping on every 3rd call (tests/edge/conftest.py)


def rows(db, sql: str, *params: object) -> list[tuple]:
    return db.execute(sql, params).fetchall()


@pytest.mark.timeout(150)
def test_fallback_detections_are_marked_and_superseded_by_the_late_primary_in_the_database(
    edge_config, grpc_server, grpc_token, db, settings, monkeypatch
):
    monkeypatch.setattr(engine_class(SLOW), "delay_s", 0.35)  # far past the 200 ms budget
    facility = settings.facilities[0]
    ensure_cameras(db, {facility: ["cam-1"]})
    cfg = edge_config(
        [{"id": "cam-1", "source": "synthetic://seed=71&frames=150", "policy": "latest"}],
        facility=facility,
        engine={"name": SLOW},
        budgets={"latency_ms": 200, "inference_deadline_ms": 45},
        transport={"kind": "grpc", "grpc_address": f"127.0.0.1:{grpc_server.port}"},
        decisions={"detection_sample_rate": 1.0},
    )
    service = EdgeService(cfg, grpc_token=grpc_token)
    service.start()
    assert service.wait_finished(90)
    service.shutdown()
    counters, written = service.pipeline.counters, service.outbox.counters["written"]
    assert service.runner.counters["primary_late"] >= 1 and counters["batches_superseded"] >= 1
    superseded = service.metrics.registry.get_sample_value(
        "wv_edge_fallback_superseded_total", {"what": "events"}
    )
    assert superseded == counters["events_superseding"]
    assert service.outbox_left == 0 and service.relay.counters["delivered"] == written

    # every event stored once, ids unique
    assert rows(db, "SELECT count(*), count(DISTINCT event_id) FROM package_detections") == [
        (written, written)
    ]
    # per-frame results of the fallback come from the shipped fallback model, the primary's from the
    # primary (a decision is flagged fallback when most of its track's frames were)
    detections = (
        "SELECT DISTINCT model_version FROM package_detections WHERE kind = 'detection' AND fallback = %s"
    )
    assert rows(db, detections, True) == [("fallback",)]
    assert rows(db, detections, False) == [("v1",)]
    # each superseding detection names fallback detections of its frame and track, and they name it back
    pairs = rows(
        db,
        """
        SELECT new.event_id, old.event_id, old.superseded_by, old.fallback, old.kind,
               old.track_id = new.track_id AND old.event_time = new.event_time
        FROM package_detections new
        CROSS JOIN LATERAL unnest(new.supersedes) AS named(id)
        LEFT JOIN package_detections old ON old.event_id = named.id
        """,
    )
    assert len(pairs) == counters["events_superseding"] > 0
    assert all(
        by == new and fallback and kind == "detection" and same for new, _, by, fallback, kind, same in pairs
    )
    assert rows(db, "SELECT count(*) FROM package_detections WHERE superseded_by IS NOT NULL") == [
        (len(pairs),)
    ]
    # one current answer per frame and track; the hourly counts count current answers
    assert not rows(
        db,
        """SELECT track_id, event_time FROM package_detections WHERE kind = 'detection' AND superseded_by IS NULL
           GROUP BY 1, 2 HAVING count(*) > 1""",
    )
    current = rows(
        db, "SELECT count(*) FROM package_detections WHERE kind = 'detection' AND superseded_by IS NULL"
    )
    assert rows(db, "SELECT sum(detections) FROM facility_hourly_counts") == current
    # one decision per track
    assert not rows(
        db, "SELECT track_id FROM package_detections WHERE kind = 'decision' GROUP BY 1 HAVING count(*) > 1"
    )
