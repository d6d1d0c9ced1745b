"""Facility-day event sets written through the real ingest path (``EventFactory`` + ``EventWriter``), and a
PostgreSQL-backed Dagster instance whose backfills the tests drive (daemon iterations, runs in process)."""

from __future__ import annotations

import contextlib
import itertools
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest
from dagster import DagsterInstance
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.instance.ref import InstanceRef
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._daemon.backfill import execute_backfill_iteration
from psycopg import sql

from bench.fixtures.events import EventFactory
from contract.events import anomaly_flag
from contract.proto import warehouse_vision_pb2 as pb
from orchestration.instance import storage_env
from realtime.storage.migrate import ensure_database
from realtime.storage.writer import EventWriter, prepare

DAMAGES = ("crushed", "torn", "wet", "open")
ROOT = Path(__file__).resolve().parents[3]


@dataclass
class Written:
    """What a scenario put in the database, for independent recomputation."""

    events: list[pb.DetectionEvent] = field(default_factory=list)
    flags: list[pb.AnomalyFlag] = field(default_factory=list)

    def __iadd__(self, other: Written) -> Written:
        self.events += other.events
        self.flags += other.flags
        return self


class Seeder:
    """Writes realistic facility-days, with edge cases, through the production writer."""

    def __init__(self, conn: psycopg.Connection) -> None:
        prepare(conn)
        self.conn = conn
        self.writer = EventWriter()
        self._seeds = itertools.count(1)

    def facility_day(self, facility: str, day: date, timezone: str, packages: int = 40) -> Written:
        """``packages`` packages decided across the local day, plus decisions just outside it.

        Every 6th package is damaged, every 5th decision comes from the fallback model, every 9th
        package is in the wrong zone, every 10th is decided twice (two cameras), and a decision
        sits exactly on each window edge (the start is inside, the end is not).
        """
        zone = ZoneInfo(timezone)
        start = datetime.combine(day, time(), zone)
        end = datetime.combine(day + timedelta(days=1), time(), zone)
        factory = EventFactory(facility, seed=next(self._seeds), zones=("inbound", "sorter", "outbound"))
        step = (end - start) / (packages + 1)
        written = Written()
        for i in range(packages):
            fields: dict[str, object] = {"event_time": start + step * (i + 1), "fallback": i % 5 == 0}
            if i % 6 == 0:
                fields["condition"] = DAMAGES[(i // 6) % len(DAMAGES)]
            if i % 9 == 0:
                fields |= {"zone": "sorter", "expected_zone": "outbound"}
            events = factory.package(1, **fields)
            written.events += events
            if i % 10 == 0:
                again = factory.decision(event_time=start + step * (i + 1) + timedelta(seconds=1))
                again.package_id = events[-1].package_id
                written.events.append(again)
        for moment in (start, end, start - timedelta(microseconds=1)):
            written.events.append(factory.decision(event_time=moment, condition="torn"))
        for kind, severity, at in (
            ("damaged", "warning", start + timedelta(hours=1)),
            ("damaged", "critical", start + timedelta(hours=2)),
            ("misplaced", "warning", start + timedelta(hours=3)),
            ("dwell", "info", end - timedelta(seconds=1)),
            ("dwell", "info", end),
        ):
            written.flags.append(
                anomaly_flag(kind=kind, facility_id=facility, flagged_at=at, severity=severity)
            )
        self.write(written)
        return written

    def write(self, written: Written) -> None:
        self.writer.write(self.conn, written.events, written.flags)


@pytest.fixture
def seeder(db: psycopg.Connection) -> Seeder:
    return Seeder(db)


@pytest.fixture
def set_facility(db: psycopg.Connection) -> Callable[..., None]:
    """``set_facility(id, timezone, expected, zones={"inbound": 10})``: reference rows of a facility."""

    def apply(facility: str, timezone: str, expected: int = 0, zones: dict[str, int] | None = None) -> None:
        db.execute(
            "UPDATE facilities SET timezone = %s, expected_daily_packages = %s WHERE facility_id = %s",
            (timezone, expected, facility),
        )
        for zone_id, n in (zones or {}).items():
            db.execute(
                "INSERT INTO zones (facility_id, zone_id, expected_daily_packages) VALUES (%s, %s, %s) "
                "ON CONFLICT (facility_id, zone_id) DO UPDATE SET expected_daily_packages = excluded.expected_daily_packages",
                (facility, zone_id, n),
            )

    return apply


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


def drive_backfill(context: WorkspaceProcessContext, backfill: str) -> BulkActionStatus:
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


@pytest.fixture
def run_backfill() -> Callable[[WorkspaceProcessContext, str], BulkActionStatus]:
    """``run_backfill(context, backfill_id)``: daemon iterations until the backfill is done."""
    return drive_backfill


@contextlib.contextmanager
def in_process_workspace(instance: DagsterInstance) -> Iterator[WorkspaceProcessContext]:
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(
            module_name="orchestration.definitions", attribute="defs", working_directory=str(ROOT)
        ),
        location_name="warehouse_vision",
    )
    with WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin)) as context:
        yield context


@pytest.fixture
def workspace() -> Callable[[DagsterInstance], contextlib.AbstractContextManager[WorkspaceProcessContext]]:
    """``with workspace(instance) as context``: the code location loaded in this process."""
    return in_process_workspace
