"""Facility shards: the map file, and `wv db upgrade` / `wv db cameras add` on every shard with the
home shard's registry mirrored (so each shard's foreign keys and joins stay local)."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from typer.testing import CliRunner, Result

from bench.fixtures.shards import database_url, drop_databases, template
from foundation.settings import ConfigError, DatabaseSettings
from realtime.storage.cli import app
from realtime.storage.shards import HOME, ShardMap

pytestmark = pytest.mark.timeout(120)
URL = "postgresql://wv@db-east:5432/wv"


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("shards:\n  east: " + URL + "\nfacilities:\n  FAC-001: west\n", 4, "unknown shard 'west'"),
        ("shards:\n  east: mysql://x/y\n", 2, "shard east: expected a PostgreSQL URL"),
        ("shards:\n  home: " + URL + "\n", 2, "shard name 'home'"),
        ("shards:\n  east: " + URL + "\nfacility:\n  FAC-001: east\n", 3, "unknown section 'facility'"),
        ("shards:\n  east: postgresql://u@h1:5432,h2:5432/wv\n", 2, "target_session_attrs=read-write"),
        ("shards: [east]\n", 1, "shards: expected a mapping"),
    ],
)
def test_a_shard_map_mistake_names_the_file_and_line(tmp_path, text, line, problem):
    path = tmp_path / "shards.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        ShardMap.load(path, "postgresql://wv@home/wv")
    assert f"WV_SHARD_MAP={path}, line {line}: " in str(error.value)
    assert problem in str(error.value)


def test_without_a_shard_map_every_facility_lives_in_the_one_database(tmp_path):
    single = ShardMap.from_settings(DatabaseSettings.load(database_url=URL))
    assert single.names == [HOME] and not single.sharded and single.url_of("FAC-009") == URL
    path = tmp_path / "shards.yaml"
    path.write_text(f"shards:\n  east: {URL}\nfacilities:\n  FAC-002: east\n")
    shards = ShardMap.from_settings(DatabaseSettings.load(database_url=URL + "x", shard_map=path))
    assert shards.names == [HOME, "east"] and shards.shard_of("FAC-002") == "east"
    assert shards.shard_of("FAC-001") == HOME  # not listed: the home shard
    assert shards.by_shard(["FAC-001", "FAC-002", "FAC-003"]) == {
        HOME: ["FAC-001", "FAC-003"],
        "east": ["FAC-002"],
    }


def _wv(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], *args: str) -> Result:
    """``wv db ARGS`` in this process (as its console script runs it) with ``env`` set."""
    for name, value in {**env, "WV_LOG_LEVEL": "WARNING"}.items():
        monkeypatch.setenv(name, value)
    return CliRunner().invoke(app, list(args))


def _rows(url: str, query: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchall()


def test_upgrade_migrates_every_shard_and_keeps_the_registry_mirrored(settings, tmp_path, monkeypatch):
    token = uuid.uuid4().hex[:8]
    home, east = (database_url(settings.database_url, f"wv_test_{n}_{token}") for n in (HOME, "east"))
    with psycopg.connect(database_url(settings.database_url, "postgres"), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE wv_test_home_{token} TEMPLATE {template(settings.database_url)}")
    (tmp_path / "shards.yaml").write_text(f"shards:\n  east: {east}\nfacilities:\n  FAC-003: east\n")
    env = {
        "WV_DATABASE_URL": home,
        "WV_SHARD_MAP": str(tmp_path / "shards.yaml"),
        "WV_FACILITIES": "FAC-001,FAC-002,FAC-003,FAC-004",
        "WV_RETENTION_DAYS": "3",  # few daily partitions to create
    }
    try:
        upgraded = _wv(monkeypatch, env, "upgrade")
        assert upgraded.exit_code == 0, upgraded.output
        assert "shard east: applied: 0001_reference" in upgraded.output  # east was created and migrated
        migrations = "SELECT version, checksum FROM schema_migrations ORDER BY 1"
        assert _rows(east, migrations) == _rows(home, migrations) != []
        registry = "SELECT facility_id, timezone FROM facilities ORDER BY 1"
        assert [f for f, _ in _rows(east, registry)] == ["FAC-001", "FAC-002", "FAC-003", "FAC-004"]

        added = _wv(monkeypatch, env, "cameras", "add", "FAC-003", "dock-1", "--source", "rtsp://10.0.0.9/s")
        assert added.exit_code == 0, added.output
        cameras = "SELECT facility_id, camera_id, source_uri FROM cameras ORDER BY 1, 2"
        assert _rows(east, cameras) == _rows(home, cameras) == [("FAC-003", "dock-1", "rtsp://10.0.0.9/s")]

        with psycopg.connect(home, autocommit=True) as conn:  # edited at home: the next upgrade mirrors it
            conn.execute("UPDATE facilities SET timezone = 'Europe/Berlin' WHERE facility_id = 'FAC-003'")
            conn.execute("INSERT INTO zones (facility_id, zone_id) VALUES ('FAC-003', 'dock')")
            conn.execute("DELETE FROM cameras")
        again = _wv(monkeypatch, env, "upgrade")
        assert again.exit_code == 0 and "shard east: schema up to date" in again.output, again.output
        assert "shard east: catalogue mirrored from home: 3 rows changed" in again.output
        assert _rows(east, registry) == _rows(home, registry)
        assert _rows(east, "SELECT facility_id, zone_id FROM zones") == [("FAC-003", "dock")]
        assert _rows(east, cameras) == []
        status = _wv(monkeypatch, env, "status")
        assert status.exit_code == 0 and status.output.count("up to date") == 2, status.output
    finally:
        drop_databases(settings.database_url, [home, east])


def test_a_shard_that_cannot_be_reached_is_named(database_url, tmp_path, monkeypatch):
    (tmp_path / "shards.yaml").write_text("shards:\n  east: postgresql://wv@127.0.0.1:1/wv\n")
    env = {"WV_DATABASE_URL": database_url, "WV_SHARD_MAP": str(tmp_path / "shards.yaml")}
    status = _wv(monkeypatch, env, "status")
    assert status.exit_code == 1
    assert "WV_SHARD_MAP shard postgresql://wv@127.0.0.1:1/wv" in status.output
