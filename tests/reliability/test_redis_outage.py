"""Redis down for a while: the edge and ingest keep going, and the windows recover afterwards.

Redis is restarted empty (no persistence), the harshest case: the windows of before the outage
and the fan-out entries of during it are gone. The running ``wv realtime windows`` must find its
streams and consumer group again by itself, and rebuild the lost minutes from the database on its
own (a new Redis data history: no lineage key; and the gap entry ingest announces for the entries
it could not publish), with no restart and no ``--rebuild-minutes``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import redis

from bench.reliability.faults import wait_until
from bench.reliability.pipeline import wait_stored
from realtime.windows.aggregator import DEFAULT_GROUP
from realtime.windows.model import read_windows
from realtime.windows.recompute import windows_from_database

FACILITY = "FAC-003"


def _stored(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM package_detections").fetchone()
        return int(row[0]) if row else 0


def _backlog(client: redis.Redis) -> int | None:
    """Entries of the facility stream the aggregator has not applied (None: no stream or group yet)."""
    key = f"wv:stream:{FACILITY}"
    if not client.exists(key):
        return None
    groups = {g["name"].decode(): g for g in client.xinfo_groups(key)}
    if DEFAULT_GROUP not in groups:
        return None
    return int(groups[DEFAULT_GROUP]["pending"]) + int(groups[DEFAULT_GROUP].get("lag") or 0)


@pytest.mark.timeout(180)
def test_redis_outage_neither_stops_edge_nor_ingest_and_windows_are_rebuilt_on_their_own(
    pipeline, broker, private_redis, endpoints_for, database_url
):
    started = datetime.now(UTC) - timedelta(minutes=1)
    endpoints = endpoints_for(broker, redis_url=private_redis.url)
    client = redis.Redis.from_url(private_redis.url, socket_timeout=2, socket_connect_timeout=2)
    windows = pipeline.service("windows", endpoints, "realtime", "windows")
    pipeline.ingest(endpoints)
    edge = pipeline.edge(FACILITY, endpoints, cameras=["synthetic://seed=13&fps=10"])
    windows.start()
    pipeline.start(wait_events=40)
    wait_until(lambda: read_windows(client, FACILITY, started, datetime.now(UTC)), 30, "live windows")

    private_redis.kill()
    written, stored = edge.written(), _stored(database_url)
    time.sleep(5)
    assert edge.written() > written, "the edge stopped without Redis"
    assert _stored(database_url) > stored, "ingest stopped without Redis"
    assert all(n.process.alive for n in [*pipeline.edges, *pipeline.ingests, windows])
    private_redis.start()  # empty: windows and streams are gone

    edge.wait_written(edge.written() + 80)
    assert edge.process.stop() == 0
    ledger = wait_stored(pipeline.journals, database_url, [FACILITY], 60)
    assert not ledger.lost and ledger.duplicated == 0 and not ledger.extra, ledger.summary()
    # The running aggregator found the recreated stream and group and applied what came after.
    wait_until(lambda: _backlog(client) == 0, 60, "aggregator caught up after Redis came back")

    end = datetime.now(UTC) + timedelta(minutes=1)
    with psycopg.connect(database_url) as conn:
        reference = windows_from_database(conn, FACILITY, started, end)
    assert reference
    wait_until(
        lambda: read_windows(client, FACILITY, started, end) == reference, 30, "windows rebuilt on their own"
    )
    assert windows.process.alive
    log = windows.process.log_text()
    assert "Redis data history changed (no lineage recorded" in log, log[-3000:]
    client.close()
