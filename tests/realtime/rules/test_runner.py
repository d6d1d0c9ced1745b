"""The periodic rule runner against the real database, broker and Redis.

A rule flag is stored once and announced once (its facility's stream, ``wv.anomalies``) however
often overlapping passes re-judge it; rate rules read the per-minute windows through the real
reader, wait while Redis lost them, and give the same verdict once they are rebuilt.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from bench.fixtures.events import EventFactory
from bench.fixtures.shards import ASSIGNMENT
from contract.proto import warehouse_vision_pb2 as pb
from realtime import kafka
from realtime.rules.config import parse_rules
from realtime.rules.engine import window_start
from realtime.rules.runner import RuleRunner
from realtime.sink import EventSink
from realtime.storage.connection import Connector
from realtime.storage.shards import HOME
from realtime.windows.aggregator import LINEAGE_KEY, WindowAggregator
from realtime.windows.recompute import WindowRepair
from realtime.windows.streams import StreamPublisher, stream_key

pytestmark = pytest.mark.timeout(60)

RULES = """
rules:
  - {name: uncertain_damage, type: threshold, kind: uncertain_damage,
     when: [{field: condition, op: "!=", value: ok}, {field: condition_confidence, op: "<", value: 0.6}]}
  - {name: lost_between_zones, type: lost, kind: lost, severity: critical, within_s: 600}
"""
RATE = """
rules:
  - {name: sorter_damage, type: rate, kind: damage_rate, metric: damage_rate, group_by: zone,
     window_minutes: 15, factor: 3, min_packages: 20, min_baseline_rate: 0.01}
"""


@pytest.fixture
def connector(database_url: str) -> Iterator[Connector]:
    c = Connector(database_url)
    yield c
    c.close()


def _stream_flags(client, facility: str) -> list[str]:
    entries = client.xrange(stream_key(facility))
    return [f[b"anomaly_id"].decode() for _, f in entries if f[b"type"] == b"anomaly"]


def test_a_rule_flag_is_stored_once_and_announced_once(
    db, connector, redis_client, kafka_bootstrap, topic_prefix, topic_reader, scalar
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
    sink = EventSink(connector.connection, component="test", streams=StreamPublisher(redis_client))
    sink.store(events, source="test")
    topic = f"{topic_prefix}anomalies"
    kafka.ensure_topics(kafka_bootstrap, [topic], partitions=1)
    producer = kafka.producer(kafka_bootstrap, client_id="wv-test-rules")
    runner = RuleRunner(
        parse_rules(RULES), connector.connection, sink, redis_client, producer=producer, anomalies_topic=topic
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
        # an overlapping pass re-judges the same events: the same flags, neither stored nor announced again
        assert runner.evaluate(now - timedelta(hours=1), now + timedelta(seconds=1)) == flags
    finally:
        producer.close(timeout=5)
    assert scalar("SELECT count(*) FROM anomaly_flags") == 2
    published = topic_reader(topic, 3, timeout_s=3.0)
    assert sorted(pb.AnomalyFlag.FromString(r.value).anomaly_id for r in published) == sorted(
        f.anomaly_id for f in flags
    )
    assert sorted(_stream_flags(redis_client, "FAC-001")) == sorted(f.anomaly_id for f in flags)


def _spike(facility: str, start: datetime, seed: int) -> list[pb.DetectionEvent]:
    """40 sorter decisions in one 15-minute window, 10 of them damaged: 25 % against a 1 % floor."""
    factory = EventFactory(facility, seed=seed, start=start, step=timedelta(seconds=20))
    return [factory.decision(zone="sorter", condition="crushed" if i % 4 == 0 else "ok") for i in range(40)]


def test_a_rate_rule_reads_the_windows_and_judges_the_same_after_redis_lost_them(
    db, connector, redis_client, scalar
):
    now = datetime.now(UTC)
    window = window_start(now - timedelta(minutes=30), 15)
    sink = EventSink(connector.connection, component="test", streams=StreamPublisher(redis_client))
    repair = WindowRepair(connector.connection, ttl_s=3600, recent_minutes=90)
    aggregator = WindowAggregator(redis_client, repair=repair)
    assert aggregator.check_lineage()  # the windows' history starts (nothing stored yet)
    sink.store(_spike("FAC-001", window, seed=51), source="test")
    runner = RuleRunner(parse_rules(RATE), connector.connection, sink, redis_client)
    since = now - timedelta(hours=1)

    # stored, not yet in the windows (the aggregator has not applied the entries): no verdict
    assert runner.evaluate(since, now) == [] and runner.rates_waiting_since is None
    while aggregator.step(block_ms=10):
        pass
    flags = runner.evaluate(since, now)
    assert [(f.kind, f.zone, f.flagged_at.ToDatetime(UTC)) for f in flags] == [
        ("damage_rate", "sorter", window + timedelta(minutes=15))
    ]
    assert '"packages": 40' in flags[0].evidence_json and '"rate": 0.25' in flags[0].evidence_json

    redis_client.flushdb()  # Redis lost everything: windows, streams, lineage
    assert runner.evaluate(since, now) == []
    assert runner.rates_waiting_since == since  # the rate rules wait for the rebuild
    assert REGISTRY.get_sample_value("wv_rule_rates_waiting", {"runner": "test"}) == 1.0
    assert aggregator.check_lineage()  # the aggregator rebuilds the windows from the database
    later = now + timedelta(seconds=1)
    assert runner.evaluate(now, later) == flags  # caught up from where it waited: the same verdict
    assert runner.rates_waiting_since is None
    assert REGISTRY.get_sample_value("wv_rule_rates_waiting", {"runner": "test"}) == 0.0

    # a failover: the windows name another data history (a promoted replica takes a new id)
    redis_client.set(LINEAGE_KEY, "the-old-masters-history")
    assert runner.evaluate(since, later) == [] and runner.rates_waiting_since == since
    assert aggregator.check_lineage()
    assert runner.evaluate(later, later + timedelta(seconds=1)) == flags
    assert scalar("SELECT count(*) FROM anomaly_flags") == 1


def test_each_shards_runner_judges_only_its_own_facilities_windows(shards, redis_client):
    now = datetime.now(UTC)
    window = window_start(now - timedelta(minutes=30), 15)
    connectors = {name: Connector(url) for name, url in shards.urls.items()}
    try:
        sinks = {
            name: EventSink(c.connection, component=name, streams=StreamPublisher(redis_client))
            for name, c in connectors.items()
        }
        repair = WindowRepair(
            connectors[HOME].connection,
            ttl_s=3600,
            recent_minutes=90,
            facility_connection=lambda f: connectors[shards.shard_of(f)].connection(),
        )
        aggregator = WindowAggregator(redis_client, repair=repair)
        assert aggregator.check_lineage()
        for seed, (facility, shard) in enumerate(sorted(ASSIGNMENT.items())):
            sinks[shard].store(_spike(facility, window, seed=60 + seed), source="test")
        while aggregator.step(block_ms=10):
            pass
        for name, connector in connectors.items():
            runner = RuleRunner(
                parse_rules(RATE),
                connector.connection,
                sinks[name],
                redis_client,
                owns=lambda f, shard=name: shards.shard_of(f) == shard,
            )
            flags = runner.evaluate(now - timedelta(hours=1), now)
            mine = sorted(f for f, s in ASSIGNMENT.items() if s == name)
            assert sorted(f.facility_id for f in flags) == mine
            with connector.connection() as conn:
                stored = conn.execute("SELECT facility_id FROM anomaly_flags ORDER BY 1").fetchall()
            assert [f for (f,) in stored] == mine
    finally:
        for c in connectors.values():
            c.close()
