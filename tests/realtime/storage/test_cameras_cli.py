"""``wv db cameras add | disable | list``: how an operator registers a facility's cameras before its edge
starts (events of unregistered cameras are dead-lettered as ``unknown_camera``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[3]


def _wv(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).with_name("wv")), "db", "cameras", *args],
        env={**os.environ, "WV_DATABASE_URL": database_url, "WV_LOG_LEVEL": "WARNING"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _cameras(db, facility: str) -> list[tuple]:
    return db.execute(
        "SELECT camera_id, source_uri, description FROM cameras WHERE facility_id = %s ORDER BY 1",
        (facility,),
    ).fetchall()


def test_cameras_added_from_the_command_line_are_listed_and_adding_again_is_harmless(db, database_url):
    db.execute("DELETE FROM cameras WHERE facility_id = 'FAC-002'")
    added = _wv(
        database_url, "add", "FAC-002", "dock-3", "--source", "rtsp://10.0.0.7/s1", "--description", "dock 3"
    )
    assert added.returncode == 0, added.stderr
    assert "dock-3" in added.stdout and "registered" in added.stdout
    again = _wv(database_url, "add", "FAC-002", "dock-3")
    assert again.returncode == 0 and "already registered" in again.stdout, again.stderr
    assert _cameras(db, "FAC-002") == [("dock-3", "rtsp://10.0.0.7/s1", "dock 3")]  # nothing lost
    moved = _wv(database_url, "add", "FAC-002", "dock-3", "--description", "dock 3, moved")
    assert moved.returncode == 0, moved.stderr
    assert _wv(database_url, "add", "FAC-002", "sorter.1").returncode == 0
    assert _cameras(db, "FAC-002") == [
        ("dock-3", "rtsp://10.0.0.7/s1", "dock 3, moved"),
        ("sorter.1", None, ""),
    ]

    listed = _wv(database_url, "list", "--facility", "FAC-002")
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[:3] for line in listed.stdout.splitlines()] == [
        ["FAC-002", "dock-3", "rtsp://10.0.0.7/s1"],
        ["FAC-002", "sorter.1", "-"],
    ]
    everything = _wv(database_url, "list").stdout.splitlines()
    assert {line.split()[0] for line in everything} == {"FAC-001", "FAC-002", "FAC-003"}


def test_a_disabled_camera_stays_registered_switched_off_until_added_again(db, database_url):
    db.execute("DELETE FROM cameras WHERE facility_id = 'FAC-002'")
    assert _wv(database_url, "add", "FAC-002", "dock-4", "--source", "rtsp://10.0.0.8/s1").returncode == 0
    stamp = db.execute("SELECT updated_at FROM cameras WHERE camera_id = 'dock-4'").fetchone()
    off = _wv(database_url, "disable", "FAC-002", "dock-4")
    assert off.returncode == 0 and "disabled" in off.stdout, off.stderr
    assert "already disabled" in _wv(database_url, "disable", "FAC-002", "dock-4").stdout
    row = db.execute(
        "SELECT enabled, updated_at, source_uri FROM cameras WHERE camera_id = 'dock-4'"
    ).fetchone()
    assert row[0] is False and row[1] > stamp[0] and row[2] == "rtsp://10.0.0.8/s1"  # kept, switched off
    assert _wv(database_url, "list", "--facility", "FAC-002").stdout.split()[:4] == [
        "FAC-002",
        "dock-4",
        "rtsp://10.0.0.8/s1",
        "off",
    ]
    assert _wv(database_url, "add", "FAC-002", "dock-4", "--source", "rtsp://10.0.0.9/s1").returncode == 0
    assert db.execute("SELECT enabled, source_uri FROM cameras WHERE camera_id = 'dock-4'").fetchone() == (
        True,
        "rtsp://10.0.0.9/s1",
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "FAC-404", "cam-1"], "error: unknown facility 'FAC-404'"),
        (["add", "FAC-001", "'; DROP TABLE cameras; --"], "error: camera id"),
        (["add", "FAC-001", "c" * 65], "error: camera id"),
        (["list", "--facility", "FAC-404"], "error: unknown facility 'FAC-404'"),
        (
            ["disable", "FAC-001", "no-such-camera"],
            "error: camera 'no-such-camera' of facility 'FAC-001' is not",
        ),
        (["disable", "FAC-001", "'; DROP TABLE cameras; --"], "error: camera \"'; DROP TABLE cameras"),
    ],
)
def test_an_unknown_facility_or_a_malformed_camera_id_is_one_error_line_and_writes_nothing(
    db, database_url, args, message
):
    before = db.execute("SELECT count(*) FROM cameras").fetchone()
    refused = _wv(database_url, *args)
    assert refused.returncode == 1
    assert refused.stderr.strip().startswith(message) and len(refused.stderr.strip().splitlines()) == 1, (
        refused.stderr
    )
    assert db.execute("SELECT count(*) FROM cameras").fetchone() == before
