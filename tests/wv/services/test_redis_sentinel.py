"""The Redis HA plugin started for real: a master, a replica and three sentinels on loopback.

Also the start-up checks of a ``redis+sentinel://`` URL against real servers: sentinels that do
not monitor the named service, and a plain Redis server given as a sentinel, stop start-up with
one line naming WV_REDIS_URL instead of hanging.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from typer.testing import CliRunner, Result

from foundation.redis_connect import RedisMisconfigured, connect, parse_sentinel_url, require_sentinels
from realtime import cli as realtime_cli
from wv.services.base import free_port, process_matches
from wv.services.redis_sentinel import DATA_NODES, RedisSentinelService


def _windows_start(url: str, tmp_path: Path) -> Result:
    """``wv realtime windows`` with ``url`` as WV_REDIS_URL (in process: it must stop at start-up)."""
    env = {"WV_REDIS_URL": url, "WV_STATE_DIR": str(tmp_path / "state"), "WV_METRICS_PORT": "0"}
    return CliRunner().invoke(realtime_cli.app, ["windows"], env=env)


@pytest.mark.timeout(90)
def test_starts_a_master_a_synced_replica_and_three_sentinels_describes_and_stops_them(
    tmp_path: Path, settings
) -> None:
    service = RedisSentinelService()
    home = tmp_path / "redis-ha"
    launched = service.start(home, free_port(), "redis+sentinel://127.0.0.1:26379/orders/3")
    try:
        parts = parse_sentinel_url(launched.url)
        assert parts.service == "orders" and parts.db == 3 and len(parts.sentinels) == 3
        assert service.probe(launched.url) is None
        with connect(launched.url, socket_timeout=2) as client:
            client.set("wv:test:key", "1")
            assert client.connection_pool.connection_kwargs["db"] == 3
        lines = service.describe(launched.url, home)
        assert lines[0].startswith("master  127.0.0.1:") and "offset" in lines[0]
        assert lines[1].startswith("replica 127.0.0.1:") and "state online" in lines[1] and "lag" in lines[1]
        pids = {
            n: int((home / n / "pid").read_text())
            for n in (*DATA_NODES, "sentinel-1", "sentinel-2", "sentinel-3")
        }
        assert all(process_matches(pid, "redis-server") for pid in pids.values())
        assert pids["sentinel-1"] == launched.pid
        command = json.loads((home / "replica" / "command.json").read_text())
        own = ("127.0.0.1", int(command[command.index("--port") + 1]))
        with pytest.raises(ValueError, match="replica cannot replicate itself"):  # it would wait for ever
            service.restart_node(home, "replica", replica_of=own)

        # Misconfiguration: a service no sentinel monitors; a plain Redis server given as a sentinel.
        unknown = launched.url.replace("/orders/3", "/payments/3")
        with pytest.raises(
            RedisMisconfigured,
            match=r"WV_REDIS_URL=.*no sentinel monitors a master named 'payments' \(they monitor: orders\)",
        ):
            require_sentinels(unknown)
        plain = urlsplit(settings.redis_url)
        not_sentinel = f"redis+sentinel://{plain.hostname}:{plain.port or 6379}/orders"
        with pytest.raises(
            RedisMisconfigured, match="answered as a plain Redis server, not a Redis Sentinel"
        ):
            require_sentinels(not_sentinel)
        result = _windows_start(unknown, tmp_path)
        assert result.exit_code == 2, result.output
        assert result.stderr.strip().splitlines()[-1].startswith("error: WV_REDIS_URL=redis+sentinel://"), (
            result.stderr
        )
        assert "payments" in result.stderr and "Traceback" not in result.stderr
        dead = f"redis+sentinel://127.0.0.1:{free_port()}/orders"
        assert "no sentinel answers" in (require_sentinels(dead) or "")  # an outage, not a misconfiguration
    finally:
        service.stop(home, launched.pid)
    assert not any(process_matches(pid, "redis-server") for pid in pids.values())
    assert "no sentinel answers" in (service.probe(launched.url) or "")
