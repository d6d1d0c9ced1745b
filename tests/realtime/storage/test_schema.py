"""The schema as writers see it: partitions in place, idempotent event inserts, constraints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from realtime.storage.partitions import TIME_SERIES, existing_partitions
from wv.settings import PlatformSettings

DETECTION = """
INSERT INTO package_detections (event_id, event_time, kind, facility_id, camera_id, track_id, package_id,
    x1, y1, x2, y2, detection_confidence, model_version, engine, precision)
VALUES (%s, %s, 'detection', 'FAC-001', 'cam-1', 't-1', 'pkg-1', 0, 0, 10, 10, 0.9, 'v1',
        'onnxruntime', 'int8')
ON CONFLICT DO NOTHING
"""


def test_setup_leaves_daily_partitions_for_the_retention_window_and_a_week_ahead(
    db: psycopg.Connection, settings: PlatformSettings
) -> None:
    today = datetime.now(UTC).date()
    for table in TIME_SERIES:
        days = existing_partitions(db, table)
        assert today - timedelta(days=settings.retention_days) in days
        assert today + timedelta(days=7) in days
        assert len(days) == settings.retention_days + 8


def test_the_same_event_written_twice_leaves_one_row(db: psycopg.Connection) -> None:
    when = datetime.now(UTC)
    first = db.execute(DETECTION, ("evt-1", when)).rowcount
    second = db.execute(DETECTION, ("evt-1", when)).rowcount

    assert (first, second) == (1, 0)
    assert db.execute("SELECT count(*) FROM package_detections WHERE event_id = 'evt-1'").fetchone() == (1,)


def test_events_land_in_their_day_partition(db: psycopg.Connection) -> None:
    when = datetime.now(UTC)
    db.execute(DETECTION, ("evt-2", when))

    row = db.execute(
        "SELECT tableoid::regclass::text FROM package_detections WHERE event_id = 'evt-2'"
    ).fetchone()
    assert row == (f"package_detections_p{when:%Y%m%d}",)


def test_out_of_range_values_are_rejected(db: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute(DETECTION.replace("0.9", "1.5"), ("evt-3", datetime.now(UTC)))


def test_each_test_starts_with_empty_tables_and_seeded_facilities(
    db: psycopg.Connection, settings: PlatformSettings
) -> None:
    assert db.execute("SELECT count(*) FROM package_detections").fetchone() == (0,)
    facilities = {r[0] for r in db.execute("SELECT facility_id FROM facilities")}
    assert facilities == set(settings.facilities)
