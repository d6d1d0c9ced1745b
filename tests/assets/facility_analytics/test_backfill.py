"""A 7-day × 3-facility backfill launched through Dagster's GraphQL API on a PostgreSQL-backed instance.

The instance stores runs, events and backfills in a fresh PostgreSQL database; the backfill
daemon's iteration is driven here, and runs execute in this process (synchronous launcher) so
the test stays fast (fixtures in ``conftest.py``). Dagster groups the 21 facility-days by the
dimension with fewer keys, so the policy makes them 3 runs (one facility-week each). The ERP share is broken for one day first, so every run's ``erp_sync`` fails there: the
messages before that day are sent, the rest stay pending (nothing lost, nothing half-sent).
After the fix, re-executing "from failure" must re-run only ``erp_sync``, for those partitions.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.storage.tags import BACKFILL_ID_TAG
from dagster_graphql.test.utils import execute_dagster_graphql

from contract.events import from_timestamp
from contract.proto import warehouse_vision_pb2 as pb
from orchestration.backfills import (
    LAUNCH_BACKFILL,
    RETRY_FAILED,
    backfill_id,
    launch_variables,
    partition_keys,
    retry_variables,
)

pytestmark = pytest.mark.timeout(180)
ZONES = {"FAC-001": "UTC", "FAC-002": "America/New_York", "FAC-003": "Asia/Kolkata"}


def decisions_by_day(written, facility: str, timezone: str) -> dict:
    """Local day → (decisions, damaged package ids) of one facility, from the written events."""
    tz = ZoneInfo(timezone)
    days: dict = defaultdict(lambda: (0, set()))
    for e in written.events:
        if e.kind == pb.EVENT_KIND_DECISION and e.facility_id == facility:
            day = from_timestamp(e.event_time).astimezone(tz).date()
            count, damaged = days[day]
            days[day] = (count + 1, damaged | ({e.package_id} if e.condition != pb.CONDITION_OK else set()))
    return days


def test_seven_days_by_three_facilities_backfill_then_retry_only_the_failed(
    db, seeder, set_facility, instance, app_environment, workspace, run_backfill
):
    first = (datetime.now(UTC) - timedelta(days=10)).date()
    days = [first + timedelta(days=i) for i in range(7)]
    expected: dict[str, dict] = {}
    for facility, timezone in ZONES.items():
        set_facility(facility, timezone)
        written = None
        for day in days:
            w = seeder.facility_day(facility, day, timezone, packages=6)
            if written is None:
                written = w
            else:
                written += w
        expected[facility] = decisions_by_day(written, facility, timezone)
    broken = app_environment / "erp" / "outgoing" / days[3].isoformat()
    broken.parent.mkdir(parents=True)
    broken.write_text("not a folder: the ERP share for this day is broken")
    keys = partition_keys(ZONES, days[0], days[-1])
    assert len(keys) == 21

    with workspace(instance) as context:
        launched = execute_dagster_graphql(
            context.create_request_context(), LAUNCH_BACKFILL, launch_variables(keys)
        )
        first_id = backfill_id(launched.data, "launchPartitionBackfill")
        assert run_backfill(context, first_id) == BulkActionStatus.COMPLETED_FAILED

        assert db.execute("SELECT count(*) FROM facility_daily_analytics").fetchone() == (21,)
        statuses = db.execute(
            "SELECT business_date >= %s, status, count(*) FROM erp_outbox GROUP BY 1, 2 ORDER BY 1, 2",
            (days[3],),
        ).fetchall()
        assert [(late, status) for late, status, _ in statuses] == [(False, "sent"), (True, "pending")]

        broken.unlink()
        retried = execute_dagster_graphql(
            context.create_request_context(), RETRY_FAILED, retry_variables(first_id)
        )
        retry_id = backfill_id(retried.data, "reexecutePartitionBackfill")
        assert run_backfill(context, retry_id) == BulkActionStatus.COMPLETED_SUCCESS

    runs = {r.run_id: r for r in instance.get_runs()}
    first_runs = [r for r in runs.values() if r.tags.get(BACKFILL_ID_TAG) == first_id]
    retry_runs = [r for r in runs.values() if r.tags.get(BACKFILL_ID_TAG) == retry_id]
    assert len(first_runs) == 3 and len(retry_runs) == 3  # a facility-week per run
    assert all(r.asset_selection == {dg.AssetKey("erp_sync")} for r in retry_runs)
    ranges = sorted((r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
                    for r in retry_runs)  # fmt: skip
    assert ranges == sorted((f"{days[0]}|{f}", f"{days[-1]}|{f}") for f in ZONES)
    for facility in ZONES:
        got = dict(
            db.execute(
                "SELECT day, decisions FROM facility_daily_analytics WHERE facility_id = %s", (facility,)
            ).fetchall()
        )
        assert got == {day: expected[facility][day][0] for day in days}, facility
    claims = db.execute(
        "SELECT status, count(*) FROM erp_outbox WHERE kind = 'damage_claim' GROUP BY 1"
    ).fetchall()
    damaged = sum(len(expected[f][day][1]) for f in ZONES for day in days)
    assert dict(claims) == {"sent": damaged}
    files = list((app_environment / "erp" / "outgoing").rglob("*.json"))
    assert len(files) == db.execute("SELECT count(*) FROM erp_outbox").fetchone()[0]
