"""Redis: probed with PING; started locally with ``redis-server`` (append-only file on)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import redis

from foundation.redis_connect import connect, is_sentinel_url, sentinel_problem
from wv.services.base import Launched, Service, find_binary, spawn, wait_healthy


def probe_redis(url: str, timeout: float = 3.0) -> str | None:
    """None when a Redis master answers PING at ``url`` (plain or sentinel); otherwise why not."""
    try:
        if is_sentinel_url(url):  # say why a sentinel URL does not lead to a master
            found = sentinel_problem(url, timeout)
            if found is not None:
                return found[0]
        with connect(url, socket_timeout=timeout, socket_connect_timeout=timeout, failover_s=0) as client:
            client.ping()
    except (redis.RedisError, OSError, ValueError) as exc:
        return str(exc) or type(exc).__name__
    return None


class RedisService(Service):
    name = "redis"
    variable = "WV_REDIS_URL"
    field = "redis_url"
    process_name = "redis-server"

    def probe(self, url: str, timeout: float = 3.0) -> str | None:
        return probe_redis(url, timeout)

    def start(self, home: Path, port: int, configured_url: str) -> Launched:
        binary = find_binary(
            "redis-server",
            (Path("/usr/bin/redis-server"),),
            hint="install it (`sudo apt-get install redis-server`, or `make setup`) or set WV_REDIS_URL",
        )
        data = home / "data"
        data.mkdir(parents=True, exist_ok=True)
        command = [
            str(binary),
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--dir", str(data.resolve()),
            "--appendonly", "yes",
            "--save", "",
            "--daemonize", "no",
            "--logfile", "",
        ]  # fmt: skip
        process = spawn(command, home)
        db = urlsplit(configured_url).path or "/0"
        url = f"redis://127.0.0.1:{port}{db}"
        wait_healthy(lambda: self.probe(url, 1.0), process.poll, f"redis-server on port {port}", home, 15)
        return Launched(url=url, pid=process.pid, port=port)
