"""Partition maintenance on plain PostgreSQL: ahead, expired, and rows waiting in DEFAULT."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest

from realtime.storage import migrate
from realtime.storage.partitions import TIME_SERIES, MaintenanceReport, existing_partitions, maintain

TODAY = date(2026, 3, 10)
ANOMALY = """
INSERT INTO anomaly_flags (anomaly_id, flagged_at, facility_id, kind, severity)
VALUES (%s, %s, 'FAC-001', 'misplaced', 'warning')
"""


def _at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


@pytest.fixture
def conn(empty_database_url: str) -> psycopg.Connection:
    migrate.upgrade(empty_database_url)
    return psycopg.connect(empty_database_url, autocommit=True)


def test_maintenance_keeps_the_window_and_moves_early_rows_out_of_default(conn: psycopg.Connection) -> None:
    first = maintain(conn, retention_days=3, days_ahead=2, today=TODAY)
    window = {TODAY + timedelta(days=n) for n in range(-3, 3)}
    assert all(set(existing_partitions(conn, t)) == window for t in TIME_SERIES)
    assert len(first.created) == 3 * 6 and first.dropped == []

    # Rows beyond the window wait in the DEFAULT partition: one early, one long expired.
    conn.execute(ANOMALY, ("early", _at(TODAY + timedelta(days=5))))
    conn.execute(ANOMALY, ("expired", _at(TODAY - timedelta(days=30))))
    conn.execute(ANOMALY, ("current", _at(TODAY)))

    later = TODAY + timedelta(days=4)
    second = maintain(conn, retention_days=3, days_ahead=2, today=later)

    assert set(existing_partitions(conn, "anomaly_flags")) == {
        later + timedelta(days=n) for n in range(-3, 3)
    }
    assert "anomaly_flags_p20260307" in second.dropped and "anomaly_flags_p20260316" in second.created
    assert second.rows_moved == 1 and second.rows_purged == 1
    where: dict[str, str] = dict(
        conn.execute("SELECT anomaly_id, tableoid::regclass::text FROM anomaly_flags").fetchall()
    )
    assert where == {"early": "anomaly_flags_p20260315"}  # "current" went with its expired partition

    again = maintain(conn, retention_days=3, days_ahead=2, today=later)
    assert (again.created, again.dropped, again.rows_moved) == ([], [], 0)


def test_maintenance_rejects_a_nonsense_window(conn: psycopg.Connection) -> None:
    with pytest.raises(ValueError, match="retention_days"):
        maintain(conn, retention_days=0)


@pytest.mark.timeout(60)
def test_concurrent_maintenance_passes_create_each_partition_once(empty_database_url: str) -> None:
    migrate.upgrade(empty_database_url)
    reports: list[MaintenanceReport] = []
    errors: list[Exception] = []

    def run() -> None:
        try:
            with psycopg.connect(empty_database_url, autocommit=True) as own:
                reports.append(maintain(own, retention_days=2, days_ahead=1, today=TODAY))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=50)

    assert errors == []
    assert sorted(len(r.created) for r in reports) == [0, 3 * 4]
