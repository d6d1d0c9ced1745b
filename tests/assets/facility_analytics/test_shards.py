"""Facility-day partitions over two facility shards run on their facility's shard and the network
weekly report reads every shard: the same rows and report as over one database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg
import pytest

from assets.common.resources import DatabaseResource
from assets.facility_analytics.assets import facility_daily_analytics
from assets.facility_analytics.reports import network_weekly_report
from assets.facility_analytics.sql import refresh_facility_day
from bench.fixtures.events import DEFAULT_CAMERAS
from bench.fixtures.shards import FACILITIES, reset, write_shard_map
from realtime.storage.facilities import mirror_catalogue

from .conftest import Seeder

pytestmark = pytest.mark.timeout(120)
TIMEZONES = {"FAC-001": "UTC", "FAC-002": "America/Chicago", "FAC-003": "Asia/Kolkata"}
"""The configured facilities (the partitions): two at home, FAC-003 on the east shard."""
ROLLUP = "SELECT facility_id, to_jsonb(t) - 'computed_at' FROM facility_daily_analytics t"
ZONES = "SELECT facility_id, to_jsonb(t) - 'computed_at' FROM facility_zone_daily_analytics t"
OUTBOX = "SELECT kind, facility_id, business_date, payload::text FROM erp_outbox ORDER BY 1, 2, 3, 4"


def _rows(url: str, query: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchall()


def test_facility_days_and_the_weekly_report_over_two_shards_equal_one_databases(
    db, database_url, seeder, set_facility, shard_set, orchestration_settings, tmp_path
):
    reset(shard_set, FACILITIES, dict.fromkeys(FACILITIES, DEFAULT_CAMERAS))
    monday = (datetime.now(UTC) - timedelta(days=10)).date()
    monday -= timedelta(days=monday.weekday())
    day = monday + timedelta(days=2)
    for facility, timezone in TIMEZONES.items():
        set_facility(facility, timezone, expected=8, zones={"inbound": 3, "sorter": 3})
        written = seeder.facility_day(facility, day, timezone, packages=8)
        with psycopg.connect(shard_set.url_of(facility), autocommit=True) as conn:
            Seeder(conn).write(written)  # the same events, on the facility's shard
    with psycopg.connect(shard_set.home_url, autocommit=True) as home:
        mirror_catalogue(db, home)  # the registry as set above, kept at home and mirrored
        with psycopg.connect(shard_set.urls["east"], autocommit=True) as east:
            mirror_catalogue(home, east)
    shards = write_shard_map(tmp_path / "shards.yaml", shard_set)
    resources = {
        "one": DatabaseResource(url=database_url),
        "sharded": DatabaseResource(url=shards.home_url, shard_map=str(tmp_path / "shards.yaml")),
    }

    for facility in TIMEZONES:  # the one database: what each facility-day run computes there
        refresh_facility_day(db, facility, day)
    first, last = (
        dg.MultiPartitionKey({"date": day.isoformat(), "facility": f}) for f in ("FAC-001", "FAC-003")
    )
    run = dg.materialize(  # the day of every facility in one run, as a backfill runs it
        [facility_daily_analytics],
        tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
        resources={"settings": orchestration_settings, "database": resources["sharded"]},
    )
    assert run.success
    reports = {}
    for name, database in resources.items():
        weekly = dg.materialize(
            [network_weekly_report],
            partition_key=monday.isoformat(),
            resources={"settings": orchestration_settings, "database": database},
        )
        metadata = weekly.asset_materializations_for_node("network_weekly_report")[0].metadata
        reports[name] = {
            k: metadata[k].value for k in ("facility_days", "packages_seen", "damage_rate", "table")
        }

    for shard, url in shards.urls.items():  # each facility's rows on its shard only
        held = {row[0] for row in _rows(url, ROLLUP)}
        assert held == {f for f in TIMEZONES if shards.shard_of(f) == shard}
    for query in (ROLLUP, ZONES, OUTBOX):
        sharded = sorted(str(row) for url in shards.urls.values() for row in _rows(url, query))
        assert sharded == sorted(str(row) for row in _rows(database_url, query)), query
    assert reports["sharded"] == reports["one"]
    assert reports["one"]["facility_days"] == 3
