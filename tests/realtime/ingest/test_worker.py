"""Kafka → PostgreSQL ingest against the real broker and database."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import psycopg
import pytest
from kafka import KafkaAdminClient, TopicPartition
from prometheus_client import REGISTRY
from psycopg import sql

from bench.fixtures.events import EventFactory, detection_batch
from contract.events import anomaly_flag
from realtime.storage.facilities import register_camera

pytestmark = pytest.mark.timeout(120)


def test_every_event_lands_exactly_once_despite_duplicates_and_a_restart(
    db, produce_events, ingest_worker, wait_for, scalar
):
    written_before, duplicates_before = (
        _counter("wv_ingest_events_written"),
        _counter("wv_ingest_duplicates_skipped"),
    )
    factory = EventFactory("FAC-001", seed=11)
    events = list(factory.stream(60, detections=4))  # 300 events, 60 decisions
    first, second = events[:150], events[150:]
    produce_events(first, 10)
    with ingest_worker("a"):
        wait_for(lambda: scalar("SELECT count(*) FROM package_detections") == 150)
    # replays of already-stored messages, then new ones, for a new group member
    produce_events(first[:50], 10)
    produce_events(second, 10)
    produce_events(second[::3], 10)
    with ingest_worker("b"):
        wait_for(lambda: scalar("SELECT count(*) FROM package_detections") == 300)
        wait_for(lambda: scalar("SELECT count(*) FROM quality_assessments") == 60)
    assert scalar("SELECT count(DISTINCT event_id) FROM package_detections") == 300
    assert scalar("SELECT count(*) FROM packages") == 60
    assert scalar("SELECT sum(decisions) FROM packages") == 60
    assert scalar("SELECT count(*) FROM dead_letters") == 0
    assert _counter("wv_ingest_events_written") - written_before == 300
    assert _counter("wv_ingest_duplicates_skipped") - duplicates_before >= 50  # the replayed messages


def _counter(name: str) -> float:
    return REGISTRY.get_sample_value(f"{name}_total", {"source": "kafka"}) or 0.0


def _set_connections(admin_db, database_url: str, allowed: bool) -> None:
    name = urlsplit(database_url).path.lstrip("/")
    admin_db.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(sql.Identifier(name), allowed))


def test_database_outage_mid_stream_loses_and_duplicates_nothing(
    db, admin_db, database_url, ingest_config, produce_events, ingest_worker, wait_for, scalar
):
    factory = EventFactory("FAC-002", seed=12)
    events = list(factory.stream(80, detections=4))  # 400 events
    produce_events(events[:100], 10)
    with ingest_worker("outage") as worker:
        wait_for(lambda: scalar("SELECT count(*) FROM package_detections") == 100)
        _set_connections(admin_db, database_url, False)
        try:
            admin_db.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> %s",
                (urlsplit(database_url).path.lstrip("/"), db.info.backend_pid),
            )
            produce_events(events[100:], 10)
            wait_for(lambda: worker.sink.breaker.state != "closed", timeout=20)
            time.sleep(2)  # the worker keeps retrying while nothing can connect
        finally:
            _set_connections(admin_db, database_url, True)
        wait_for(lambda: scalar("SELECT count(*) FROM package_detections") == 400, timeout=40)
    assert scalar("SELECT count(DISTINCT event_id) FROM package_detections") == 400
    assert scalar("SELECT count(*) FROM quality_assessments") == 80
    assert scalar("SELECT sum(decisions) FROM packages") == 80


def _headers(record) -> dict[str, str]:
    return {k: v.decode() for k, v in record.headers}


def test_each_kind_of_bad_message_is_dead_lettered_with_its_reason_and_ingest_goes_on(
    db, ingest_config, producer, ingest_worker, wait_for, scalar, topic_reader
):
    factory = EventFactory("FAC-001", seed=13)
    good = factory.decision()
    missing_id = factory.detection(event_id="")
    old_schema = factory.detection(schema_version=7)
    unknown = EventFactory("FAC-999", seed=14).detection()
    unregistered = factory.decision(camera_id="cam-99")
    future = factory.detection(event_time=datetime.now(UTC) + timedelta(hours=2))
    bad_value = factory.detection(detection_confidence=1.5)
    oversized = detection_batch(list(factory.stream(80))).SerializeToString()
    assert len(oversized) > ingest_config.max_message_bytes
    good.anomalies.append(
        anomaly_flag(kind="misplaced", facility_id="", flagged_at=datetime.now(UTC), event_id=good.event_id)
    )
    messages = [
        (ingest_config.detections_topic, b"\x0a\x05abc"),  # truncated: not a DetectionBatch
        (ingest_config.detections_topic, oversized),
        (ingest_config.detections_topic, detection_batch([good, missing_id, old_schema]).SerializeToString()),
        (ingest_config.detections_topic, detection_batch([unknown, future, bad_value]).SerializeToString()),
        (ingest_config.detections_topic, detection_batch([unregistered]).SerializeToString()),
    ]
    for topic, value in messages:
        producer.send(topic, key=b"FAC-001", value=value)
    producer.flush(10)
    expected = {
        "undecodable: not a DetectionBatch",
        "oversized",
        "missing_field: event_id",
        "unsupported_schema_version: 7",
        "unknown_facility: FAC-999",
        "unknown_camera: cam-99 of facility FAC-001",
        "future_event_time",
        "invalid_value: detection_confidence",
    }
    with ingest_worker("dlq"):
        wait_for(lambda: scalar("SELECT count(*) FROM dead_letters") == len(expected))
        wait_for(lambda: scalar("SELECT count(*) FROM anomaly_flags") == 1)
        wait_for(lambda: scalar("SELECT count(*) FROM package_detections") == 1)
    rows = db.execute("SELECT reason, raw, source, source_offset, source_item, event_id FROM dead_letters")
    reasons = {reason: rest for reason, *rest in rows.fetchall()}
    for prefix in expected:
        assert any(r.startswith(prefix) for r in reasons), (prefix, sorted(reasons))
    assert all(offset is not None for _, _, offset, _, _ in reasons.values())
    by_event = {event_id: (raw, item) for raw, _, _, item, event_id in reasons.values() if event_id}
    assert by_event[unknown.event_id] == (unknown.SerializeToString(), 0)
    assert by_event[bad_value.event_id][1] == 2
    assert reasons[next(r for r in reasons if r.startswith("oversized"))][0] == oversized
    assert scalar("SELECT event_id FROM package_detections") == good.event_id
    assert scalar("SELECT event_id FROM quality_assessments") == good.event_id  # not the unregistered one

    letters = topic_reader(ingest_config.dead_letter_topic, len(expected))
    assert len(letters) == len(expected)
    published = {_headers(r)["wv-reason"]: r for r in letters}
    assert set(published) == set(reasons)
    assert {r.value for r in letters} == {raw for raw, *_ in reasons.values()}


def test_a_camera_is_dead_lettered_until_registered_and_accepted_within_the_miss_window_after(
    db, ingest_config, produce_events, producer, ingest_worker, wait_for, scalar
):
    """While a worker runs: events (and the flags inside them) of an unregistered camera are dead letters (no row);
    once the camera is registered, its events are stored within the registry's miss-refresh
    window (5 s) without a restart, and every event sent meanwhile is either stored or a dead letter."""
    known = EventFactory("FAC-001", seed=15).package(2)
    newcomer = EventFactory("FAC-001", seed=16, cameras=("dock-7",))
    early = newcomer.package(2)
    early[-1].anomalies.append(
        anomaly_flag(
            kind="misplaced", facility_id="", flagged_at=datetime.now(UTC), event_id=early[-1].event_id
        )
    )
    reason = "unknown_camera: dock-7 of facility FAC-001"
    with ingest_worker("cameras"):
        produce_events([*known, *early], 10)
        wait_for(lambda: scalar("SELECT count(*) FROM dead_letters") == len(early))
        wait_for(lambda: scalar("SELECT count(*) FROM package_detections") == len(known))
        assert [r for (r,) in db.execute("SELECT DISTINCT reason FROM dead_letters")] == [reason]
        ids = [e.event_id for e in early]
        assert scalar("SELECT count(*) FROM package_detections WHERE event_id = ANY(%s)", ids) == 0
        assert scalar("SELECT count(*) FROM quality_assessments WHERE event_id = ANY(%s)", ids) == 0
        assert scalar("SELECT count(*) FROM anomaly_flags") == 0

        assert register_camera(db, "FAC-001", "dock-7", description="new dock camera")
        registered_at = time.monotonic()
        sent = []

        def stored_one() -> bool:
            sent.append(newcomer.detection())
            produce_events(sent[-1:], 1)
            return scalar("SELECT count(*) FROM package_detections WHERE camera_id = 'dock-7'") > 0

        wait_for(stored_one, timeout=20, interval=0.5)
        accepted_after = time.monotonic() - registered_at
        settled = "SELECT (SELECT count(*) FROM package_detections WHERE camera_id = 'dock-7') + "
        settled += "(SELECT count(*) FROM dead_letters) - %s"
        wait_for(lambda: scalar(settled, len(early)) == len(sent))
    assert accepted_after < 5.0 + 3.0, accepted_after  # the miss window, plus delivery on a busy machine
    assert scalar("SELECT count(DISTINCT event_id) FROM package_detections WHERE camera_id = 'dock-7'") >= 1
    assert [r for (r,) in db.execute("SELECT DISTINCT reason FROM dead_letters")] == [reason]


def _committed(config, partition: int) -> int | None:
    admin = KafkaAdminClient(bootstrap_servers=config.bootstrap.split(","), client_id="wv-test-admin")
    try:
        tp = TopicPartition(config.detections_topic, partition)
        offsets = admin.list_group_offsets({config.group_id: [tp]})[config.group_id]
    finally:
        admin.close()
    found = offsets.get(tp)
    return None if found is None else found.offset


def test_offsets_are_committed_in_order_when_a_later_batch_is_stored_first(
    db, database_url, ingest_config, producer, ingest_worker, wait_for, scalar
):
    factory = EventFactory("FAC-001", seed=15)
    first, blocked, later = factory.decision(), factory.decision(), factory.decision()
    blocked.package_id = first.package_id

    def send(event) -> None:
        value = detection_batch([event]).SerializeToString()
        producer.send(ingest_config.detections_topic, value=value, partition=0)
        producer.flush(10)

    with ingest_worker("order", writers=2):
        send(first)
        wait_for(lambda: _committed(ingest_config, 0) == 1)
        with psycopg.connect(database_url) as lock:  # holds the package row: its next upsert waits
            lock.execute("SELECT 1 FROM packages WHERE package_id = %s FOR UPDATE", (first.package_id,))
            send(blocked)
            wait_for(
                lambda: (
                    scalar(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'",
                        f"{ingest_config.group_id}-order",
                    )
                    == 1
                )
            )
            send(later)  # a second writer stores it while the first waits
            wait_for(
                lambda: scalar("SELECT count(*) FROM quality_assessments WHERE event_id = %s", later.event_id)
            )
            time.sleep(1.0)  # room for a wrong commit to happen
            assert _committed(ingest_config, 0) == 1, "offsets moved past a batch still being written"
            lock.rollback()
        wait_for(lambda: _committed(ingest_config, 0) == 3)
    assert scalar("SELECT decisions FROM packages WHERE package_id = %s", first.package_id) == 2
    assert scalar("SELECT count(*) FROM package_detections") == 3
