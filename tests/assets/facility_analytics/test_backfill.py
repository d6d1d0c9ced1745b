"""A 7-day × 3-facility backfill launched through Dagster's GraphQL API on a PostgreSQL-backed instance.

The instance stores runs, events and backfills in a fresh PostgreSQL database; the backfill
daemon's iteration is driven here, and runs execute in this process (synchronous launcher) so
the test stays fast. With the 7-partitions-per-run policy the 21 facility-days take 3 runs (one facility-week
each). The ERP share is broken for one day first, so every run's ``erp_sync`` fails there: the
messages before that day are sent, the rest stay pending (nothing lost, nothing half-sent).
After the fix, re-executing "from failure" must re-run only ``erp_sync``, for those partitions.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import psycopg
import pytest
from dagster import DagsterInstance
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.instance.ref import InstanceRef
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.storage.tags import BACKFILL_ID_TAG
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._daemon.backfill import execute_backfill_iteration
from dagster_graphql.test.utils import execute_dagster_graphql
from psycopg import sql

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
from orchestration.instance import storage_env
from realtime.storage.migrate import ensure_database

pytestmark = pytest.mark.timeout(180)
ROOT = Path(__file__).resolve().parents[3]
ZONES = {"FAC-001": "UTC", "FAC-002": "America/New_York", "FAC-003": "Asia/Kolkata"}


@pytest.fixture
def instance(settings, tmp_path):
    """A Dagster instance on its own PostgreSQL database, launching runs in this process."""
    name = f"wv_test_dagster_{uuid.uuid4().hex[:10]}"
    url = settings.database_url.rsplit("/", 1)[0] + "/" + name
    ensure_database(url)
    env = storage_env(url)
    home = tmp_path / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        f"""
storage:
  postgres:
    postgres_url: "{env["DAGSTER_PG_URL"]}"
run_coordinator:
  module: dagster._core.run_coordinator
  class: DefaultRunCoordinator
run_launcher:
  module: dagster._core.launcher.sync_in_memory_run_launcher
  class: SyncInMemoryRunLauncher
concurrency:
  pools:
    default_limit: 2
telemetry:
  enabled: false
"""
    )
    with DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as dagster_instance:
        yield dagster_instance
    admin = settings.database_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def app_environment(database_url, tmp_path, monkeypatch):
    """Runs resolve their resources from the settings: point them at the test database and folders."""
    monkeypatch.setenv("WV_DATABASE_URL", database_url)
    monkeypatch.setenv("WV_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("WV_ERP_ADAPTER", "files")
    monkeypatch.setenv("WV_ERP_BATCH_SIZE", "1")  # one message per delivery: the failure point is exact
    yield tmp_path / "state"


def run_backfill(context: WorkspaceProcessContext, backfill: str) -> BulkActionStatus:
    """Drive the backfill daemon until the backfill is done; runs execute synchronously."""
    logger = logging.getLogger("test_backfill")
    for _ in range(40):
        list(execute_backfill_iteration(context, logger))
        found = context.instance.get_backfill(backfill)
        assert found is not None, backfill
        status = found.status
        if status not in (BulkActionStatus.REQUESTED, BulkActionStatus.CANCELING):
            return status
    raise AssertionError(f"backfill {backfill} still {status} after 40 daemon iterations")


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
    db, seeder, set_facility, instance, app_environment
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

    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(
            module_name="orchestration.definitions", attribute="defs", working_directory=str(ROOT)
        ),
        location_name="warehouse_vision",
    )
    with WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin)) as context:
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
