"""Windows Redis lost are rebuilt from the database by the aggregator itself, never by a flag.

Two rules (``realtime.windows.aggregator``): a new Redis data history (lineage: the master's
replication id) rebuilds the recent windows; a fan-out ``gap`` entry rebuilds the minutes whose
entries ingest could not publish.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bench.reliability.faults import RedisServer
from contract.proto import warehouse_vision_pb2 as pb
from foundation.redis_connect import connect
from realtime.sink import EventSink
from realtime.storage.connection import Connector
from realtime.windows.aggregator import LINEAGE_KEY, WindowAggregator
from realtime.windows.model import read_windows, window_keys
from realtime.windows.recompute import WindowRepair, windows_from_database
from realtime.windows.streams import StreamPublisher, stream_key
from tests.realtime.windows.test_windows import FACILITY, _day_slice

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def connector(database_url: str) -> Iterator[Connector]:
    c = Connector(database_url)
    yield c
    c.close()


def _drain(aggregator: WindowAggregator) -> None:
    while aggregator.step(block_ms=10):
        pass


def _matches(client, db, start: datetime) -> bool:
    end = start + timedelta(minutes=10)
    reference = windows_from_database(db, FACILITY, start, end)
    assert len(reference) >= 3
    return read_windows(client, FACILITY, start, end) == reference


def test_a_new_redis_history_rebuilds_the_recent_windows(db, redis_client, connector):
    start, events = _day_slice(seed=41)
    EventSink(connector.connection, component="test", streams=StreamPublisher(redis_client)).store(
        events, source="test"
    )
    repair = WindowRepair(connector.connection, ttl_s=600, recent_minutes=30)
    aggregator = WindowAggregator(redis_client, repair=repair)
    assert aggregator.check_lineage()  # first start: no lineage recorded yet
    assert not aggregator.check_lineage()  # same history: nothing to do
    _drain(aggregator)
    assert _matches(redis_client, db, start)

    # A failover to a replica that lacked the last writes: one window gone, another one short,
    # and the replica's lineage key still names the old master's replication id.
    minute = int(start.timestamp()) // 60 * 60
    redis_client.delete(*window_keys(FACILITY, minute))
    redis_client.hincrby(window_keys(FACILITY, minute + 60)[0], "packages", -1)
    redis_client.set(LINEAGE_KEY, "the-old-masters-replication-id")
    assert not _matches(redis_client, db, start)
    assert aggregator.check_lineage()
    assert _matches(redis_client, db, start)

    redis_client.flushdb()  # a restart without persistence: everything gone, the key too
    assert aggregator.check_lineage()
    assert _matches(redis_client, db, start)


def test_entries_ingest_could_not_publish_are_rebuilt_from_their_gap_entry(db, connector, tmp_path: Path):
    server = RedisServer(tmp_path)  # a private server: it is killed and restarted empty
    server.start()
    client = connect(server.url, socket_timeout=1, socket_connect_timeout=1)
    now = [0.0]
    publisher = StreamPublisher(client, clock=lambda: now[0])
    sink = EventSink(connector.connection, component="test", streams=publisher)
    start, events = _day_slice(seed=43)
    half = len(events) // 2
    try:
        server.kill()
        sink.store(events[:half], source="test")  # committed, fan-out failed
        sink.store(events[half : half + 20], source="test")  # committed, fan-out paused
        server.start()
        now[0] += 60  # the pause is over
        sink.store(events[half + 20 :], source="test")
        entries: Any = client.xrange(stream_key(FACILITY))
        gaps = [f for _, f in entries if f[b"type"] == b"gap"]
        assert len(gaps) == 1 and entries[-1][1][b"type"] == b"gap"  # after the batch's own entries
        expected = sum(1 for e in events[: half + 20] if e.kind == pb.EVENT_KIND_DECISION) + sum(
            len(e.anomalies) for e in events[: half + 20]
        )
        assert int(gaps[0][b"dropped"]) == expected
        first, last = int(gaps[0][b"first_ms"]), int(gaps[0][b"last_ms"])
        assert first <= last

        repair = WindowRepair(connector.connection, ttl_s=600, recent_minutes=1)
        aggregator = WindowAggregator(client, repair=repair)
        _drain(aggregator)  # the lineage rule is not involved: only the gap entry repairs
        assert _matches(client, db, start)
        assert client.xpending(stream_key(FACILITY), aggregator.group)["pending"] == 0
    finally:
        client.close()
        server.kill()
