"""Kafka ingest over two facility shards (two databases on the local server, four facilities):
each event lands once on its facility's shard, as one database would hold it, and a shard that
is down holds back only its own facilities' events."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

from bench.fixtures.events import EventFactory
from bench.fixtures.shards import ASSIGNMENT, FACILITIES
from bench.reliability.pipeline import committed_offsets
from contract.events import anomaly_flag
from contract.proto import warehouse_vision_pb2 as pb
from realtime.storage.shards import HOME
from realtime.storage.writer import EventWriter, prepare

pytestmark = pytest.mark.timeout(120)
TABLES = {
    "package_detections": "event_id, facility_id, package_id, zone, event_time",
    "quality_assessments": "event_id, facility_id, condition",
    "packages": "package_id, facility_id, decisions, first_seen, last_seen, last_zone",
    "anomaly_flags": "anomaly_id, facility_id, kind",
}


def _events(seed: int, packages: int = 12) -> list[pb.DetectionEvent]:
    """Every facility's stream, shuffled: most Kafka messages then span both shards."""
    events = [e for i, f in enumerate(FACILITIES) for e in EventFactory(f, seed=seed + i).stream(packages)]
    random.Random(seed).shuffle(events)
    return events


def _rows(url: str, table: str) -> set[tuple]:
    with psycopg.connect(url) as conn:
        return set(conn.execute(f"SELECT {TABLES[table]} FROM {table}").fetchall())


def _count(url: str, table: str = "package_detections") -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
        return row[0] if row else 0


def _committed(bootstrap: str, group: str, topic: str) -> int:
    """Messages of ``topic`` the group has committed, over all partitions."""
    return sum(committed_offsets(bootstrap, group, topic)[0].values())


def test_each_event_lands_once_on_its_facilitys_shard_as_one_database_would_hold_it(
    shards, one_database, database_url, ingest_config, produce_events, ingest_worker, wait_for
):
    events = _events(seed=40)  # 4 facilities x 12 packages x 4 events
    now = datetime.now(UTC)
    flags = []
    for facility in FACILITIES:  # an edge flag rides inside its event, to the event's shard
        carrier = [e for e in events if e.facility_id == facility][-1]
        carrier.anomalies.append(
            anomaly_flag(kind="misplaced", facility_id="", flagged_at=now, event_id=carrier.event_id)
        )
        flags.append(carrier.anomalies[-1])
    # A batch that reached the east shard before a crash, its offsets never committed: replayed below.
    replayed = [e for e in events if ASSIGNMENT[e.facility_id] == "east"][:30]
    with psycopg.connect(shards.urls["east"], autocommit=True) as east:
        prepare(east)
        EventWriter().write(east, replayed)
    messages = len(produce_events(events, 20))
    unknown = EventFactory("FAC-999", seed=49).decision()
    messages += len(produce_events([unknown], 1))
    sharded_group = f"{ingest_config.group_id}-sharded"

    with (
        ingest_worker("sharded", database_url=shards.home_url, shards=shards, group_id=sharded_group),
        ingest_worker("one"),
    ):
        total = len(events)
        wait_for(lambda: sum(_count(u) for u in shards.urls.values()) == total, timeout=60)
        wait_for(lambda: _count(database_url) == total, timeout=60)
        wait_for(lambda: sum(_count(u, "anomaly_flags") for u in shards.urls.values()) == len(flags))
        wait_for(
            lambda: (
                _committed(ingest_config.bootstrap, sharded_group, ingest_config.detections_topic) == messages
            )
        )

    for name, url in shards.urls.items():
        held = {f for _, f, *_ in _rows(url, "package_detections")}
        assert held == {f for f, s in ASSIGNMENT.items() if s == name}  # rows only in their shard
    for table in TABLES:
        per_shard = [_rows(url, table) for url in shards.urls.values()]
        assert not per_shard[0] & per_shard[1]
        assert per_shard[0] | per_shard[1] == _rows(database_url, table), table
    assert _count(shards.home_url, "dead_letters") == 1  # the unknown facility's, at home
    assert _count(shards.urls["east"], "dead_letters") == 0


def _allow_connections(admin_db: psycopg.Connection, url: str, allowed: bool) -> None:
    name = urlsplit(url).path.lstrip("/")
    admin_db.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(sql.Identifier(name), allowed))
    if not allowed:
        admin_db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))


def test_a_shard_that_is_down_holds_back_only_its_facilities_and_loses_nothing(
    shards, admin_db, ingest_config, produce_events, ingest_worker, wait_for
):
    home, east = shards.home_url, shards.urls["east"]
    before, during = _events(seed=50, packages=5), _events(seed=60)
    on_home = sum(ASSIGNMENT[e.facility_id] == HOME for e in during)

    def committed() -> int:
        return _committed(ingest_config.bootstrap, ingest_config.group_id, ingest_config.detections_topic)

    with ingest_worker("sharded", database_url=home, shards=shards) as worker:
        messages = len(produce_events(before, 20))
        wait_for(lambda: _count(home) + _count(east) == len(before))
        wait_for(lambda: committed() == messages)
        on_home_before = _count(home)
        _allow_connections(admin_db, east, False)
        try:
            messages += len(produce_events(during, 20))
            # The home shard's facilities keep flowing while the east shard is down ...
            wait_for(lambda: _count(home) == on_home_before + on_home, timeout=60)
            lane = worker._lanes.lanes["east"]
            wait_for(lambda: lane.stalled and lane.items > 0)
            # ... and no offset moves past the events held for it.
            assert committed() < messages
        finally:
            _allow_connections(admin_db, east, True)
        wait_for(lambda: _count(home) + _count(east) == len(before) + len(during), timeout=60)
        wait_for(lambda: committed() == messages, timeout=30)
    for url in (home, east):
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT count(*), count(DISTINCT event_id) FROM package_detections").fetchone()
            assert row is not None and row[0] == row[1]  # nothing twice
    decisions = sum(e.kind == pb.EVENT_KIND_DECISION for e in [*before, *during])
    assert _count(home, "quality_assessments") + _count(east, "quality_assessments") == decisions
