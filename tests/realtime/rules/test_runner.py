"""The periodic rule runner against the real database and broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bench.fixtures.events import EventFactory
from contract.proto import warehouse_vision_pb2 as pb
from realtime import kafka
from realtime.rules.config import parse_rules
from realtime.rules.runner import RuleRunner
from realtime.sink import EventSink
from realtime.storage.connection import Connector

pytestmark = pytest.mark.timeout(60)

RULES = """
rules:
  - {name: uncertain_damage, type: threshold, kind: uncertain_damage,
     when: [{field: condition, op: "!=", value: ok}, {field: condition_confidence, op: "<", value: 0.6}]}
  - {name: lost_between_zones, type: lost, kind: lost, severity: critical, within_s: 600}
"""


def test_runner_stores_flags_once_and_publishes_them(
    db, database_url, kafka_bootstrap, topic_prefix, topic_reader, scalar
):
    db.execute(
        "INSERT INTO zones (facility_id, zone_id, kind, next_zone_id) VALUES "
        "('FAC-001', 'inbound', 'lane', 'sorter'), ('FAC-001', 'sorter', 'sorter', NULL)"
    )
    now = datetime.now(UTC)
    factory = EventFactory("FAC-001", seed=41, start=now - timedelta(minutes=40), step=timedelta(seconds=5))
    events = []
    for i in range(20):
        inbound = factory.package(1, zone="inbound")
        events += inbound
        if i == 3:
            lost_package = inbound[-1].package_id  # never reaches the sorter
        else:
            sorter = factory.decision(
                zone="sorter",
                condition="torn" if i == 7 else "ok",
                condition_confidence=0.5 if i == 7 else 0.95,
            )
            sorter.package_id = inbound[-1].package_id
            events.append(sorter)
    connector = Connector(database_url)
    sink = EventSink(connector.connection, component="test")
    sink.store(events, source="test")
    topic = f"{topic_prefix}anomalies"
    producer = kafka.producer(kafka_bootstrap, client_id="wv-test-rules")
    runner = RuleRunner(
        parse_rules(RULES), connector.connection, sink, producer=producer, anomalies_topic=topic
    )
    try:
        flags = runner.evaluate(now - timedelta(hours=1), now)
        assert sorted(f.kind for f in flags) == ["lost", "uncertain_damage"]
        stored = db.execute(
            "SELECT kind, severity, source, package_id FROM anomaly_flags ORDER BY kind"
        ).fetchall()
        assert [(k, s, src) for k, s, src, _ in stored] == [
            ("lost", "critical", "rule:lost_between_zones"),
            ("uncertain_damage", "warning", "rule:uncertain_damage"),
        ]
        assert stored[0][3] == lost_package
        assert (
            runner.evaluate(now - timedelta(hours=1), now + timedelta(seconds=1)) == flags
        )  # same flags again
        assert scalar("SELECT count(*) FROM anomaly_flags") == 2  # stored once
        published = topic_reader(topic, 4)
        assert {pb.AnomalyFlag.FromString(r.value).anomaly_id for r in published} == {
            f.anomaly_id for f in flags
        }
    finally:
        producer.close(timeout=5)
        connector.close()
