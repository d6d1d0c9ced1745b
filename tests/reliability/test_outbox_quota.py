"""The edge's outbox disk quota reached during a broker outage: the oldest non-anomaly events are
dropped and counted, anomalies are kept, and everything else still reaches the database once.

Here "lost" is measured, not assumed: the journal of every event the outbox accepted against the
rows in the database.
"""

from __future__ import annotations

import pytest

from bench.reliability.faults import wait_until
from bench.reliability.pipeline import wait_stored

FACILITY = "FAC-001"
QUOTA_MB = 0.05  # ~50 kB: a few seconds of one camera's events


@pytest.mark.timeout(180)
def test_outbox_quota_drops_oldest_plain_events_counts_them_and_keeps_anomalies(
    pipeline, durable_broker, endpoints_for, database_url
):
    endpoints = endpoints_for(durable_broker)
    pipeline.ingest(endpoints)
    edge = pipeline.edge(
        FACILITY, endpoints, cameras=["synthetic://seed=17&fps=10&misplaced=0.3"], outbox_quota_mb=QUOTA_MB
    )
    pipeline.start(wait_events=30)
    wait_until(
        lambda: wait_stored(pipeline.journals, database_url, [FACILITY], 0).stored, 30, "events stored"
    )

    durable_broker.kill()
    outage_from = edge.written()
    wait_until(
        lambda: edge.metric("wv_edge_outbox_removed_total", reason="dropped_quota") >= 80, 60, "quota drops"
    )
    assert edge.metric("wv_edge_outbox_bytes") <= QUOTA_MB * 2**20
    durable_broker.start()
    edge.wait_drained()
    dropped = edge.metric("wv_edge_outbox_removed_total", reason="dropped_quota")
    assert edge.metric("wv_edge_outbox_removed_total", reason="dropped_quota_anomaly") == 0
    assert edge.process.stop() == 0

    # After the restart the ingest group rejoins and catches up (tens of seconds on a loaded
    # machine); the counted drops can never arrive, so wait until only they are missing.
    wait_until(
        lambda: len(wait_stored(pipeline.journals, database_url, [FACILITY], 0).lost) <= dropped,
        90,
        "ingest catching up after the outage",
        interval=1.0,
    )
    ledger = wait_stored(pipeline.journals, database_url, [FACILITY], 0)
    lost = sorted((ledger.owed[i] for i in ledger.lost), key=lambda e: e.order)
    assert ledger.duplicated == 0 and not ledger.extra, ledger.summary()
    # Every event missing from the database is a counted drop. A drop may still arrive: the relay
    # can be sending the oldest entries while the quota removes them, so drops bound losses.
    assert 0 < len(lost) <= dropped
    assert not any(e.anomaly for e in lost), "an anomaly was dropped"
    anomalies = [e for e in ledger.owed.values() if e.anomaly and e.order >= outage_from]
    assert anomalies, "no anomaly was raised during the outage: the test proves nothing about them"
    # Oldest first: no plain event written between the first and the last dropped one was kept.
    kept_between = [
        e
        for e in ledger.owed.values()
        if not e.anomaly and e.event_id in ledger.stored and lost[0].order < e.order < lost[-1].order
    ]
    assert not kept_between
