"""Redis master killed under load: Sentinel promotes the replica, fan-out and windows carry on,
and what the asynchronous replica never received is rebuilt from the database on its own.

Redis runs as ``wv services`` would with HA on (``wv.services.redis_sentinel``: a master, a
replica, three sentinels); every centre process gets the ``redis+sentinel://`` URL. To make the
replica really miss writes, it is frozen (SIGSTOP) and its link dropped for a moment before the
master is SIGKILLed, and thawed right after: the stream entries and window updates of that moment exist only on the
dead master. The test checks they were lost (the new master's stream is shorter than the old
one's) and that the windows still end up equal to the database's answer, with no operator step.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import redis

from bench.reliability.faults import SentinelRedis, wait_until
from bench.reliability.pipeline import wait_stored
from foundation.redis_connect import connect
from realtime.windows.aggregator import DEFAULT_GROUP, LINEAGE_KEY
from realtime.windows.model import read_windows
from realtime.windows.recompute import windows_from_database
from realtime.windows.streams import stream_key

FACILITY = "FAC-003"
STREAM = stream_key(FACILITY)


@pytest.fixture
def sentinel_redis(tmp_path: Path) -> Iterator[SentinelRedis]:
    server = SentinelRedis(tmp_path / "redis-ha")
    server.start()
    yield server
    server.stop()


def _backlog(client: redis.Redis) -> int | None:
    if not client.exists(STREAM):
        return None
    groups = {g["name"].decode(): g for g in client.xinfo_groups(STREAM)}
    if DEFAULT_GROUP not in groups:
        return None
    return int(groups[DEFAULT_GROUP]["pending"]) + int(groups[DEFAULT_GROUP].get("lag") or 0)


def _replid(client: redis.Redis) -> str:
    return str(client.info("replication")["master_replid"])


@pytest.mark.timeout(240)
def test_redis_master_killed_under_load_replica_takes_over_and_windows_are_rebuilt(
    pipeline, broker, sentinel_redis, endpoints_for, database_url
):
    started = datetime.now(UTC) - timedelta(minutes=1)
    endpoints = endpoints_for(broker, redis_url=sentinel_redis.url)
    client = connect(sentinel_redis.url, socket_timeout=2, socket_connect_timeout=2, failover_s=15)
    windows = pipeline.service("windows", endpoints, "realtime", "windows")
    pipeline.ingest(endpoints)
    edge = pipeline.edge(FACILITY, endpoints, cameras=["synthetic://seed=13&fps=10"])
    windows.start()
    pipeline.start(wait_events=20)
    wait_until(lambda: read_windows(client, FACILITY, started, datetime.now(UTC)), 30, "live windows")
    first_history = _replid(client)
    wait_until(lambda: client.get(LINEAGE_KEY) == first_history.encode(), 30, "lineage recorded")

    # The replica stops receiving; the master goes on taking fan-out and window writes, then dies.
    replica = sentinel_redis.cut_replica()
    length = client.xlen(STREAM)
    wait_until(lambda: client.xlen(STREAM) >= length + 5, 30, "fan-out entries only the master has")
    length = client.xlen(STREAM)
    old = sentinel_redis.kill_master()
    os.kill(replica, signal.SIGCONT)
    new = sentinel_redis.wait_promoted(old, timeout=60)
    assert new != old

    fresh = connect(sentinel_redis.url, socket_timeout=2, failover_s=15)
    lost = length - fresh.xlen(STREAM)
    assert lost > 0, "the promoted replica had every entry: nothing was lost, nothing to rebuild"
    # Fan-out resumes on the new master; the aggregator notices the new history and rebuilds.
    resumed_at = fresh.xlen(STREAM)
    wait_until(lambda: fresh.xlen(STREAM) > resumed_at + 5, 60, "fan-out resumed on the new master")
    wait_until(
        lambda: fresh.get(LINEAGE_KEY) == _replid(fresh).encode(), 60, "windows rebuilt for the new master"
    )
    assert _replid(fresh) != first_history
    rebuilds = windows.metrics()
    assert any(name == "wv_window_rebuilds_total" and ("reason", "lineage") in labels and value >= 2
               for (name, labels), value in rebuilds.items()), rebuilds  # fmt: skip

    edge.wait_written(edge.written() + 20)
    assert edge.process.stop() == 0
    ledger = wait_stored(pipeline.journals, database_url, [FACILITY], 60)
    assert not ledger.lost and ledger.duplicated == 0 and not ledger.extra, ledger.summary()
    wait_until(lambda: _backlog(fresh) == 0, 60, "aggregator caught up on the new master")

    end = datetime.now(UTC) + timedelta(minutes=1)
    with psycopg.connect(database_url) as conn:
        reference = windows_from_database(conn, FACILITY, started, end)
    assert reference
    wait_until(
        lambda: read_windows(fresh, FACILITY, started, end) == reference, 30, "windows equal the database"
    )
    assert all(n.process.alive for n in [*pipeline.ingests, windows])
    client.close()
    fresh.close()
