"""Windows rebuilt over two facility shards: each facility's from its own shard, the same windows
one database gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from bench.fixtures.events import EventFactory
from bench.fixtures.shards import FACILITIES
from realtime.storage.connection import Connector
from realtime.storage.shards import HOME
from realtime.storage.writer import EventWriter, prepare
from realtime.windows.model import read_windows
from realtime.windows.recompute import WindowRepair, windows_from_database

pytestmark = pytest.mark.timeout(60)


def test_recent_windows_rebuilt_over_two_shards_are_those_of_one_database(shards, one_database, redis_client):
    events = [e for i, f in enumerate(FACILITIES) for e in EventFactory(f, seed=100 + i).stream(10)]
    prepare(one_database)
    EventWriter().write(one_database, events)
    for name, url in shards.urls.items():
        with psycopg.connect(url, autocommit=True) as conn:
            prepare(conn)
            EventWriter().write(conn, [e for e in events if shards.shard_of(e.facility_id) == name])
    connectors = {name: Connector(url) for name, url in shards.urls.items()}
    try:
        repair = WindowRepair(
            connectors[HOME].connection,
            ttl_s=600,
            recent_minutes=30,
            facility_connection=lambda facility: connectors[shards.shard_of(facility)].connection(),
        )
        assert repair.recent(redis_client) > 0
    finally:
        for connector in connectors.values():
            connector.close()
    end = datetime.now(UTC) + timedelta(minutes=5)
    start = end - timedelta(minutes=40)
    for facility in FACILITIES:
        expected = windows_from_database(one_database, facility, start, end)
        assert expected and read_windows(redis_client, facility, start, end) == expected, facility
