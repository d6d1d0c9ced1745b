"""``erp_sync`` over two facility shards: each facility-day is dispatched from its facility's shard,
and the same events give the same ERP messages (files) and outbox states as one database."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from typer.testing import CliRunner

from assets.common.resources import DatabaseResource
from assets.erp.resource import ErpResource
from assets.erp.sync import erp_sync
from assets.facility_analytics.sql import refresh_facility_day
from bench.fixtures.events import DEFAULT_CAMERAS, EventFactory
from bench.fixtures.shards import FACILITIES, reset, write_shard_map
from orchestration import erp_cli
from realtime.storage.writer import EventWriter, prepare

pytestmark = pytest.mark.timeout(60)
RUN = ("FAC-001", "FAC-003")
"""The run's facilities: one at home, one on the east shard (FAC-002 and FAC-004 have no events)."""
OUTBOX = "SELECT kind, facility_id, business_date, payload::text, status FROM erp_outbox"


def _seed_and_refresh(url: str, events: list, day) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        prepare(conn)
        EventWriter().write(conn, events, [])
        for facility in RUN:
            refresh_facility_day(conn, facility, day)  # enqueues the day's ERP messages


def _files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def test_erp_sync_over_two_shards_delivers_what_one_database_does(
    db, database_url, shard_set, tmp_path, monkeypatch
):
    monkeypatch.setenv("WV_ERP_ADAPTER", "files")
    reset(shard_set, FACILITIES, dict.fromkeys(FACILITIES, DEFAULT_CAMERAS))
    day = (datetime.now(UTC) - timedelta(days=3)).date()
    noon = datetime.combine(day, time(12), UTC)
    events = {
        f: [
            e
            for i in range(6)
            for e in EventFactory(f, seed=10 * n + i, zones=("inbound", "sorter")).package(
                1, event_time=noon + timedelta(minutes=i), condition="crushed" if i % 2 else "ok"
            )
        ]
        for n, f in enumerate(RUN)
    }
    _seed_and_refresh(database_url, [e for f in RUN for e in events[f]], day)
    for facility in RUN:
        _seed_and_refresh(shard_set.url_of(facility), events[facility], day)
    shards = write_shard_map(tmp_path / "shards.yaml", shard_set)
    first, last = (dg.MultiPartitionKey({"date": day.isoformat(), "facility": f}) for f in RUN)
    metadata = {}
    for name, database in {
        "one": DatabaseResource(url=database_url),
        "sharded": DatabaseResource(url=shards.home_url, shard_map=str(tmp_path / "shards.yaml")),
    }.items():
        run = dg.materialize(  # both facility-days in one run, as a backfill runs them
            [erp_sync],
            tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
            resources={"database": database, "erp": ErpResource(files_dir=str(tmp_path / name))},
        )
        assert run.success
        metadata[name] = {
            k: v.value for k, v in run.asset_materializations_for_node("erp_sync")[0].metadata.items()
        }

    sent = _files(tmp_path / "one")
    assert sent and _files(tmp_path / "sharded") == sent
    # Three claims and a report per facility-day.
    assert metadata["sharded"] == metadata["one"] and metadata["one"]["sent"] == 8
    one = sorted(map(str, db.execute(OUTBOX).fetchall()))
    sharded = []
    for shard, url in shards.urls.items():
        with psycopg.connect(url) as conn:
            rows = conn.execute(OUTBOX).fetchall()
        assert {r[1] for r in rows} == {f for f in RUN if shards.shard_of(f) == shard}
        sharded += map(str, rows)
    assert sorted(sharded) == one

    # On-call's `wv erp status` and `requeue` see every shard's outbox as one.
    one_env = {"WV_DATABASE_URL": database_url, "WV_SHARD_MAP": None}
    sharded_env = {"WV_DATABASE_URL": shards.home_url, "WV_SHARD_MAP": str(tmp_path / "shards.yaml")}
    status = {
        name: CliRunner().invoke(erp_cli.app, ["status"], env=env)
        for name, env in (("one", one_env), ("sharded", sharded_env))
    }
    assert status["one"].exit_code == status["sharded"].exit_code == 0, status["sharded"].output
    assert status["sharded"].output == status["one"].output and "8" in status["one"].output
    requeued = CliRunner().invoke(erp_cli.app, ["requeue", "--failed"], env=sharded_env)
    assert requeued.exit_code == 0 and requeued.output.startswith("0 message(s)"), requeued.output
