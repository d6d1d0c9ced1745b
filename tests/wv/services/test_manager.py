"""Local services started for real: a private Redis, broker and PostgreSQL on free ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import redis

from wv.services.base import ServiceError, find_binary, process_matches
from wv.services.kafka import KafkaService, api_versions_probe
from wv.services.manager import ServiceManager
from wv.settings import PlatformSettings

WV = Path(sys.executable).with_name("wv")


def _env_file(state: Path) -> dict[str, str]:
    lines = (state / "services.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line)


@pytest.mark.timeout(60)
def test_up_starts_private_redis_and_broker_and_down_stops_only_them(tmp_path: Path) -> None:
    manager = ServiceManager(tmp_path, environ={})

    states = manager.up(["redis", "kafka"], private=True)

    assert [(s.name, s.origin, s.healthy) for s in states] == [
        ("redis", "local", True),
        ("kafka", "local", True),
    ]
    recorded = _env_file(tmp_path)
    assert recorded == {"WV_REDIS_URL": states[0].url, "WV_KAFKA_BOOTSTRAP": states[1].url}
    assert recorded["WV_REDIS_URL"] != "redis://127.0.0.1:6379/0"
    with redis.Redis.from_url(recorded["WV_REDIS_URL"]) as client:
        assert client.set("k", "v") and client.get("k") == b"v"
    assert api_versions_probe(recorded["WV_KAFKA_BOOTSTRAP"], 2.0) is None
    # A second `up` finds them running and starts nothing new.
    assert [s.pid for s in manager.up(["redis", "kafka"])] == [s.pid for s in states]

    assert manager.down() == ["redis", "kafka"]

    assert not any(
        process_matches(s.pid or 0, name) for s, name in zip(states, ["redis", "tansu"], strict=True)
    )
    assert _env_file(tmp_path) == {}
    assert [s.origin for s in manager.status(["redis", "kafka"])] == ["default", "default"]
    assert manager.down() == []


def test_a_configured_url_that_does_not_answer_is_an_error_naming_the_variable(tmp_path: Path) -> None:
    manager = ServiceManager(tmp_path, environ={"WV_REDIS_URL": "redis://127.0.0.1:1/0"})

    with pytest.raises(ServiceError, match=r"WV_REDIS_URL=redis://127\.0\.0\.1:1/0 does not answer"):
        manager.up(["redis"])
    assert not (tmp_path / "services" / "redis" / "service.json").exists()


def test_a_missing_binary_says_how_to_install_it() -> None:
    with pytest.raises(ServiceError, match="no-such-server not found: apt-get install it"):
        find_binary("no-such-server", (Path("/nonexistent/no-such-server"),), hint="apt-get install it")


def test_unknown_service_names_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ServiceError, match="unknown service"):
        ServiceManager(tmp_path, environ={}).status(["mysql"])


def test_status_reports_the_core_services_and_any_enabled_one_healthy(settings: PlatformSettings) -> None:
    done = subprocess.run([str(WV), "services", "status"], capture_output=True, text=True, timeout=60)

    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stdout + done.stderr
    names = [line.split()[0] for line in lines]
    assert names[:3] == ["postgres", "redis", "kafka"]
    assert set(names[3:]) <= {"label-studio"}  # on once `wv demo` (or WV_SERVICES_LABELING) started it
    assert all(line.endswith("healthy") for line in lines)


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.skipif(
    not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")), reason="no PostgreSQL server package"
)
def test_up_initialises_and_starts_a_private_postgresql(tmp_path: Path) -> None:
    manager = ServiceManager(tmp_path, environ={})
    home = tmp_path / "services" / "postgres"
    try:
        (state,) = manager.up(["postgres"], private=True)

        assert state.origin == "local" and state.healthy
        assert _env_file(tmp_path)["WV_DATABASE_URL"] == state.url
        admin = state.url.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin) as conn:
            assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
        cluster = (home / "data").resolve()
    finally:
        manager.down(["postgres"], purge=True)

    assert not home.exists() and not cluster.exists()
    assert manager.status(["postgres"])[0].origin == "default"


@pytest.mark.timeout(30)
def test_a_taken_port_is_reported_and_the_broker_process_does_not_linger(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]

        with pytest.raises(ServiceError, match="address already in use") as error:
            KafkaService().start(tmp_path, port, "127.0.0.1:9092")

    assert "AddrInUse" in str(error.value)
    assert not any(
        process_matches(int(pid), f"127.0.0.1:{port}") for pid in os.listdir("/proc") if pid.isdigit()
    )
