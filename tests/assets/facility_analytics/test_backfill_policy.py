"""The backfill policy of the facility-day assets: how many runs a backfill becomes, and that a range run
writes exactly what one run per facility-day writes.

Dagster splits a date × facility backfill into ranges along the dimension with more keys, one range
per key of the other (a day of every facility, or a facility's run of days), then chunks each range
by ``max_partitions_per_run`` (``assets/facility_analytics/assets.py``: ``BACKFILL_POLICY``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pytest
from dagster._core.definitions.automation_tick_evaluation_context import (
    _build_run_requests_with_backfill_policy,
)
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.storage.tags import BACKFILL_ID_TAG
from dagster_graphql.test.utils import execute_dagster_graphql

from assets.common.resources import DatabaseResource
from assets.facility_analytics.assets import BACKFILL_POLICY, FACILITY_DAYS_PER_RUN, facility_daily_analytics
from orchestration.backfills import LAUNCH_BACKFILL, backfill_id, launch_variables, partition_keys

pytestmark = pytest.mark.timeout(120)
NETWORK = [f"FAC-{i:03d}" for i in range(1, 48)]
START = date(2024, 1, 1)


def planned_runs(facilities: list[str], first: date, last: date) -> list[tuple[str, str]]:
    """(first key, last key) of each run Dagster plans for the backfill, on a 47-facility × 3-year definition."""
    partitions = dg.MultiPartitionsDefinition(
        {
            "date": dg.DailyPartitionsDefinition(start_date=START.isoformat(), end_date="2027-01-01"),
            "facility": dg.StaticPartitionsDefinition(NETWORK),
        }
    )
    requests = _build_run_requests_with_backfill_policy(
        [dg.AssetKey(facility_daily_analytics.key.path)],
        [],
        BACKFILL_POLICY,
        frozenset(partition_keys(facilities, first, last)),
        partitions,
        {},
        None,
    )
    return [
        (r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
        for r in requests
    ]


def test_a_network_backfill_is_one_run_per_day_and_a_long_one_chunks_each_facility():
    month = planned_runs(NETWORK, date(2026, 10, 1), date(2026, 10, 30))
    assert len(month) == 30  # not 1,410 (one per partition), not 210 (7 per run)
    assert all(start.endswith("|FAC-001") and end.endswith("|FAC-047") for start, end in month)
    assert len(planned_runs(NETWORK, date(2026, 10, 1), date(2026, 10, 1))) == 1

    year = planned_runs(NETWORK, date(2025, 1, 1), date(2025, 12, 31))
    per_facility = -(-365 // FACILITY_DAYS_PER_RUN)
    assert len(year) == 47 * per_facility  # a facility's year in chunks, not 17,155 runs
    quarter = planned_runs(["FAC-007"], date(2026, 1, 1), date(2026, 3, 31))
    assert len(quarter) == -(-90 // FACILITY_DAYS_PER_RUN)  # one facility's 90 days: one run


ROLLUP = """
SELECT facility_id, day, timezone, window_start, window_end, decisions, packages_seen, expected_packages,
       throughput_by_hour, damaged_packages, damage_rate, misplaced_packages, misplacement_rate,
       anomalies_total, anomalies, latency_p50_ms, latency_p99_ms, fallback_decisions, fallback_rate,
       unassessed_decisions, discrepancy_total, source
FROM facility_daily_analytics ORDER BY facility_id, day
"""
ZONE_ROWS = "SELECT * FROM facility_zone_daily_analytics ORDER BY facility_id, day, zone_id"
OUTBOX = """
SELECT kind, facility_id, business_date, payload FROM erp_outbox
ORDER BY facility_id, business_date, kind, payload::text
"""


def test_a_range_run_writes_what_single_facility_day_runs_write(
    db, database_url, seeder, set_facility, orchestration_settings, instance, app_environment, workspace,
    run_backfill,
):  # fmt: skip
    facilities = {"FAC-001": "UTC", "FAC-002": "Asia/Kolkata"}
    first = (datetime.now(UTC) - timedelta(days=10)).date()
    days = [first + timedelta(days=i) for i in range(3)]
    for facility, timezone in facilities.items():
        set_facility(facility, timezone, expected=6, zones={"inbound": 2, "sorter": 2})
        for day in days:
            seeder.facility_day(facility, day, timezone, packages=4)
    keys = partition_keys(facilities, days[0], days[-1])

    resources = {"settings": orchestration_settings, "database": DatabaseResource(url=database_url)}
    for key in keys:  # what the nightly schedule does: one facility-day per run
        result = dg.materialize([facility_daily_analytics], partition_key=key, resources=resources)
        assert result.success, key
    single = (db.execute(ROLLUP).fetchall(), db.execute(ZONE_ROWS).fetchall(), db.execute(OUTBOX).fetchall())
    assert len(single[0]) == len(keys) == 6
    db.execute("DELETE FROM facility_daily_analytics")
    db.execute("DELETE FROM erp_outbox")

    with workspace(instance) as context:
        launched = execute_dagster_graphql(
            context.create_request_context(),
            LAUNCH_BACKFILL,
            launch_variables(keys, assets=["facility_daily_analytics"]),
        )
        backfill = backfill_id(launched.data, "launchPartitionBackfill")
        assert run_backfill(context, backfill) == BulkActionStatus.COMPLETED_SUCCESS

    runs = [r for r in instance.get_runs() if r.tags.get(BACKFILL_ID_TAG) == backfill]
    assert len(runs) == 2  # one per facility: its days in one run
    ranged = (db.execute(ROLLUP).fetchall(), db.execute(ZONE_ROWS).fetchall(), db.execute(OUTBOX).fetchall())
    assert ranged == single
