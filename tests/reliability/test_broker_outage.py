"""The broker killed and restarted while edges publish: every event reaches the database once.

The broker keeps its log and offsets in S3 (moto), as a real cluster keeps them on disk; with
the in-memory Tansu of `wv services up`, a restart would itself drop messages it had already
acknowledged (see docs/reliability.md), which no client can prevent.
"""

from __future__ import annotations

import time

import pytest

from bench.reliability.faults import wait_until
from bench.reliability.pipeline import wait_stored

FACILITIES = ("FAC-001", "FAC-002")


@pytest.mark.timeout(180)
def test_broker_killed_and_restarted_while_edges_publish_loses_and_duplicates_nothing(
    pipeline, durable_broker, endpoints_for, database_url
):
    endpoints = endpoints_for(durable_broker)
    ingest = pipeline.ingest(endpoints)
    edges = [
        pipeline.edge(f, endpoints, cameras=[f"synthetic://seed={i + 7}&fps=8"])
        for i, f in enumerate(FACILITIES)
    ]
    pipeline.start(wait_events=30)
    wait_until(
        lambda: wait_stored(pipeline.journals, database_url, FACILITIES, 0).stored, 30, "events stored"
    )

    durable_broker.kill()
    before = [e.written() for e in edges]
    time.sleep(6)  # edges keep inferring into their outboxes, ingest keeps retrying
    assert all(e.written() > b for e, b in zip(edges, before, strict=True)), (
        "edges stopped while the broker was down"
    )
    assert all(e.outbox_events() > 0 for e in edges)
    durable_broker.start()

    for edge, b in zip(edges, before, strict=True):
        wait_until(
            lambda edge=edge, b=b: edge.outbox_events() == 0 and edge.written() > b + 60, 60, "replayed"
        )
        assert edge.metric("wv_edge_publish_failures_total") > 0
        assert edge.process.stop() == 0
    ledger = wait_stored(pipeline.journals, database_url, FACILITIES, 60)
    assert not ledger.lost, ledger.summary()
    assert ledger.duplicated == 0 and not ledger.extra, ledger.summary()
    assert ingest.process.alive
