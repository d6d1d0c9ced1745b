"""Migrations on a real PostgreSQL: from empty, twice, concurrently, and guarded against edits."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import psycopg
import pytest

from realtime.storage import migrate

TABLES = {
    "facilities",
    "cameras",
    "zones",
    "packages",
    "package_detections",
    "quality_assessments",
    "anomaly_flags",
    "verified_samples",
    "model_versions",
    "erp_outbox",
    "hard_example_exports",
    "dead_letters",
    "schema_migrations",
}
INDEXES = {
    "package_detections_package",  # a package's history by package_id
    "anomaly_flags_facility_time",  # anomalies by facility and time range
    "package_detections_facility_time",  # detections by facility and day
    "quality_assessments_package",
    "packages_facility_last_seen",
}


def test_upgrade_creates_the_database_and_applies_everything_once(empty_database_url: str) -> None:
    first = migrate.upgrade(empty_database_url)
    second = migrate.upgrade(empty_database_url)

    assert first[:2] == ["0001_reference", "0002_timeseries.postgres"]
    assert second == []
    state = migrate.status(empty_database_url)
    assert state.pending == [] and state.flavour == "postgres"
    assert [a.version for a in state.applied] == sorted(a.version for a in state.applied)
    with psycopg.connect(empty_database_url) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")}
    assert tables >= TABLES
    assert indexes >= INDEXES


def test_concurrent_upgrades_apply_each_migration_once(empty_database_url: str) -> None:
    migrate.ensure_database(empty_database_url)
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(migrate.upgrade(empty_database_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert errors == []
    assert sorted(len(r) for r in results)[:2] == [0, 0]
    with psycopg.connect(empty_database_url) as conn:
        applied = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
    assert applied == (len(migrate.plan(migrate.discover(), "postgres")),)


def test_editing_an_applied_migration_is_refused(empty_database_url: str, tmp_path: Path) -> None:
    for path in migrate.MIGRATIONS_DIR.glob("*.sql"):
        shutil.copy(path, tmp_path)
    migrate.upgrade(empty_database_url, tmp_path)
    edited = tmp_path / "0001_reference.sql"
    edited.write_text(edited.read_text() + "\n-- edited\n")

    with pytest.raises(migrate.MigrationError, match=r"0001_reference\.sql changed after it was applied"):
        migrate.upgrade(empty_database_url, tmp_path)


def test_a_version_needs_a_file_for_the_server_flavour(tmp_path: Path) -> None:
    (tmp_path / "0001_a.timescale.sql").write_text("SELECT 1;")

    with pytest.raises(migrate.MigrationError, match=r"no plain file and no \.postgres\.sql variant"):
        migrate.plan(migrate.discover(tmp_path), "postgres")
    assert [m.label for m in migrate.plan(migrate.discover(tmp_path), "timescale")] == ["0001_a.timescale"]


def test_misnamed_migration_files_are_rejected(tmp_path: Path) -> None:
    (tmp_path / "1_init.sql").write_text("SELECT 1;")

    with pytest.raises(migrate.MigrationError, match="expected NNNN_name"):
        migrate.discover(tmp_path)
