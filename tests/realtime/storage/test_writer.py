"""The one write path: atomic batches, idempotent replays, packages, refused rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bench.fixtures.events import EventFactory
from contract.events import anomaly_flag, from_timestamp
from realtime.codec import Reason, Rejection
from realtime.storage.writer import DeadLetter, EventWriter, prepare

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def conn(db):
    prepare(db)
    return db


def test_a_batch_and_its_replay_are_stored_exactly_once(conn, scalar):
    factory = EventFactory("FAC-001", seed=61)
    events = list(factory.stream(20, detections=3, damaged_share=0.3))
    events[-1].anomalies.append(
        anomaly_flag(kind="damaged", facility_id="", flagged_at=datetime.now(UTC), anomaly_id="")
    )
    standalone = anomaly_flag(
        kind="misplaced", facility_id="FAC-001", flagged_at=datetime.now(UTC), source="edge"
    )
    letter = DeadLetter(Rejection(Reason.UNDECODABLE, "test", b"\x00\x01"), "wv.detections", 0, 7)
    writer = EventWriter()
    first = writer.write(conn, events, [standalone], [letter])
    assert (first.events_written, first.assessments_written, first.packages_upserted) == (80, 20, 20)
    assert (first.flags_written, first.dead_letters_written) == (2, 1)
    assert len(first.new_flag_ids) == 2 and standalone.anomaly_id in first.new_flag_ids
    replay = writer.write(conn, [*events, *events[:5]], [standalone], [letter])  # replays, repeated in-batch
    assert (replay.events, replay.events_written, replay.event_duplicates) == (80, 0, 80)
    assert (replay.flags_written, replay.dead_letters_written, replay.packages_upserted) == (0, 0, 0)
    assert replay.new_flag_ids == frozenset()  # nothing to announce again
    assert scalar("SELECT count(*) FROM package_detections") == 80
    assert scalar("SELECT sum(decisions) FROM packages") == 20
    assert scalar("SELECT count(*) FROM dead_letters") == 1
    # the embedded flag inherited its event's ids and a deterministic anomaly id
    row = conn.execute("SELECT event_id, package_id FROM anomaly_flags WHERE kind = 'damaged'").fetchone()
    assert row == (events[-1].event_id, events[-1].package_id)


def test_the_fast_and_the_staged_path_store_the_same_rows(conn, scalar):
    factory = EventFactory("FAC-002", seed=62)
    fast, staged = EventWriter(fast_path=True), EventWriter(fast_path=False)
    a, b = list(factory.stream(10)), list(factory.stream(10))
    assert fast.write(conn, a).events_written == 40
    assert staged.write(conn, b).events_written == 40
    mixed = fast.write(conn, [*a[:4], *factory.stream(2)])  # replays force the staged fallback
    assert (mixed.events_written, mixed.event_duplicates, mixed.assessments_written) == (8, 4, 2)
    assert scalar("SELECT count(*) FROM package_detections") == 88
    assert scalar("SELECT count(*) FROM quality_assessments") == 22


def test_a_package_keeps_its_latest_decision_whatever_the_arrival_order(conn, scalar):
    factory = EventFactory("FAC-003", seed=63)
    later = factory.decision(zone="outbound", condition="torn")
    earlier = factory.decision(
        zone="inbound", condition="ok", event_time=from_timestamp(later.event_time) - timedelta(minutes=5)
    )
    earlier.package_id = later.package_id
    writer = EventWriter()
    writer.write(conn, [later])
    writer.write(conn, [earlier])
    row = conn.execute(
        "SELECT last_zone, last_condition, decisions, first_seen <= last_seen FROM packages WHERE package_id = %s",
        (later.package_id,),
    ).fetchone()
    assert row == ("outbound", "torn", 2, True)


def test_rows_the_database_refuses_are_dead_lettered_and_the_rest_is_stored(conn, scalar):
    events = list(EventFactory("FAC-001", seed=64).stream(8))
    events[5].sku = "SKU-REFUSED"
    conn.execute("ALTER TABLE package_detections ADD CONSTRAINT test_refuse CHECK (sku <> 'SKU-REFUSED')")
    try:
        result = EventWriter().write_isolating(conn, events, source="test")
    finally:
        conn.execute("ALTER TABLE package_detections DROP CONSTRAINT test_refuse")
    assert result.events_written == 31
    assert [d.rejection.event_id for d in result.rejected] == [events[5].event_id]
    reason = scalar("SELECT reason FROM dead_letters WHERE event_id = %s", events[5].event_id)
    assert reason.startswith("rejected_by_database: 23514")
    assert scalar("SELECT count(*) FROM package_detections") == 31
