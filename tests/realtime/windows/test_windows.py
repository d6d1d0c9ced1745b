"""Redis Streams fan-out and per-minute windows, checked against the database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from bench.fixtures.events import EventFactory
from contract.events import anomaly_flag, from_timestamp
from realtime.sink import EventSink
from realtime.storage.connection import Connector
from realtime.windows.aggregator import WindowAggregator
from realtime.windows.model import CONVEYOR_GROUPS, Counts, read_windows
from realtime.windows.recompute import rebuild, windows_from_database
from realtime.windows.streams import StreamPublisher, stream_key

pytestmark = pytest.mark.timeout(60)
FACILITY = "FAC-001"


@pytest.fixture
def sink(database_url, redis_client) -> Iterator[EventSink]:
    connector = Connector(database_url)
    yield EventSink(
        connector.connection, component="test", streams=StreamPublisher(redis_client, maxlen=10_000)
    )
    connector.close()


def _day_slice(seed: int = 31):
    """~300 events over three minutes: damaged, misplaced, fallback, unmeasured, flagged decisions."""
    start = (datetime.now(UTC) - timedelta(minutes=10)).replace(second=0, microsecond=0)
    factory = EventFactory(FACILITY, seed=seed, start=start, step=timedelta(seconds=3))
    events = []
    for i in range(60):
        fields: dict[str, object] = {}
        if i % 7 == 0:
            fields["condition"] = "torn"
        if i % 5 == 0:
            fields["expected_zone"] = "outbound"
            fields["zone"] = "inbound"
        if i % 11 == 0:
            fields["fallback"] = True
        package = factory.package(4, **fields)
        decision = package[-1]
        if i % 13 == 0:
            decision.ClearField("timings")
        if i % 9 == 0:
            decision.anomalies.append(
                anomaly_flag(
                    kind="damaged", facility_id=FACILITY, flagged_at=from_timestamp(decision.event_time)
                )
            )
        events += package
    return start, events


def _pending(redis_client, group: str) -> int:
    return sum(
        redis_client.xpending(k, group)["pending"] for k in redis_client.scan_iter(match="wv:stream:*")
    )


def _assert_match(redis_client, db, start: datetime) -> None:
    end = start + timedelta(minutes=10)
    live = read_windows(redis_client, FACILITY, start, end)
    reference = windows_from_database(db, FACILITY, start, end)
    assert len(reference) >= 3
    assert live == reference


def test_windows_match_a_recomputation_from_the_database_despite_redelivery(db, redis_client, sink):
    start, events = _day_slice()
    for i in range(0, len(events), 50):
        sink.store(events[i : i + 50], source="test")
    sink.store(events[::4], source="test")  # a replayed batch is fanned out again
    aggregator = WindowAggregator(redis_client, block_ms=10)
    while aggregator.step(block_ms=10):
        pass
    assert _pending(redis_client, aggregator.group) == 0
    _assert_match(redis_client, db, start)
    windows = read_windows(redis_client, FACILITY, start, start + timedelta(minutes=10))
    assert sum(w.counts.packages for w in windows) == 60
    assert sum(w.anomalies.get("damaged", 0) for w in windows) == 7
    assert 0 < max(w.counts.rate("damage_rate") for w in windows) < 1
    assert 0 < max(w.counts.rate("misplacement_rate") for w in windows) < 1
    for group in CONVEYOR_GROUPS:  # each decision counted once by its zone and once by its camera
        parts = [c for w in windows for (g, _), c in w.conveyors.items() if g == group]
        assert len(parts) > len(windows) and sum(parts, Counts()) == sum(
            (w.counts for w in windows), Counts()
        )


def test_a_crashed_consumers_pending_entries_are_claimed_and_counted_once(db, redis_client, sink):
    start, events = _day_slice(seed=32)
    sink.store(events, source="test")
    crashed = WindowAggregator(redis_client, consumer="crashed")
    crashed.streams()
    # it reads a first part of the stream and dies before applying/acknowledging anything
    redis_client.xreadgroup(crashed.group, "crashed", {stream_key(FACILITY): ">"}, count=40)
    survivor = WindowAggregator(redis_client, consumer="survivor", min_idle_ms=0)
    while survivor.step(block_ms=10):
        pass
    assert _pending(redis_client, survivor.group) == 40
    assert survivor.recover() > 0
    assert _pending(redis_client, survivor.group) == 0
    assert survivor.recover() == 0  # nothing left, nothing counted twice
    _assert_match(redis_client, db, start)


def test_windows_lost_with_redis_are_rebuilt_from_the_database(db, redis_client, sink):
    start, events = _day_slice(seed=33)
    sink.store(events, source="test")
    redis_client.flushdb()  # Redis lost everything (or missed the fan-out during an outage)
    assert read_windows(redis_client, FACILITY, start, start + timedelta(minutes=10)) == []
    assert rebuild(redis_client, db, FACILITY, start, start + timedelta(minutes=10), ttl_s=600) >= 3
    _assert_match(redis_client, db, start)
    sink.store(events[-20:], source="test")  # late re-deliveries after the rebuild do not double count
    aggregator = WindowAggregator(redis_client)
    while aggregator.step(block_ms=10):
        pass
    _assert_match(redis_client, db, start)
