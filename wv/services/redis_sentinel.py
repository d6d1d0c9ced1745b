"""Redis with automatic failover: a master, one replica and three Sentinels on loopback.

Selected instead of :class:`~wv.services.redis.RedisService` when HA is configured. Everything
lives under the service's home::

    master/      redis-server (append-only file on), its log and pid file
    replica/     redis-server --replicaof the master
    sentinel-N/  redis-server --sentinel with its own config file (Sentinel rewrites it)

The Sentinels monitor the master as ``<service>`` (the name in the configured
``redis+sentinel://…/<service>`` URL, else ``wv-redis``) with quorum 2,
``down-after-milliseconds`` 2000 and ``failover-timeout`` 10000, sized for a test: a SIGKILLed
master is replaced within a few seconds. Production sizes these for its network (typically
5000–30000 ms down-after, 180000 ms failover-timeout) and runs each node on its own machine.

:meth:`start` returns only when the replica's link is up (``master_link_status:up``: a replica
that has not finished its first sync is never promoted) and every Sentinel has discovered the
replica and the two other Sentinels (without that no quorum can elect a leader). The recorded
pid is the first Sentinel's (the data servers may swap roles or die in a failover); :meth:`stop`
stops every process whose pid file is under the home.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import redis

from foundation.redis_connect import connect, is_sentinel_url, parse_sentinel_url
from wv.services.base import (
    Launched,
    Service,
    ServiceError,
    find_binary,
    free_port,
    log_tail,
    process_matches,
    spawn,
    terminate,
    wait_healthy,
)
from wv.services.redis import probe_redis

DEFAULT_SERVICE = "wv-redis"
SENTINELS = 3
QUORUM = 2
DOWN_AFTER_MS = 2000
FAILOVER_TIMEOUT_MS = 10_000
DATA_NODES = ("master", "replica")


def _info(client: redis.Redis, section: str) -> dict[str, Any]:
    return dict(client.info(section))


class RedisSentinelService(Service):
    name = "redis"
    variable = "WV_REDIS_URL"
    field = "redis_url"
    process_name = "redis-server"
    folder = "redis-ha"  # beside a single-server Redis's folder, never in it
    replicated = True  # a single server answering at the default URL does not do

    def __init__(self) -> None:
        self._processes: dict[Path, subprocess.Popen[bytes]] = {}
        """The processes this object started (reaped when stopped)."""

    # --- probing ----------------------------------------------------------------------------
    def probe(self, url: str, timeout: float = 3.0) -> str | None:
        return probe_redis(url, timeout)

    def describe(self, url: str, home: Path | None = None, timeout: float = 2.0) -> list[str]:
        """One line per data node: role, address, replication offset and the replica's lag."""
        if not is_sentinel_url(url):
            return []
        parts = parse_sentinel_url(url)
        lines: list[str] = []
        try:
            with connect(url, socket_timeout=timeout, socket_connect_timeout=timeout, failover_s=0) as master:
                replication = _info(master, "replication")
                address = master.connection_pool.get_master_address()  # type: ignore[attr-defined]
        except (redis.RedisError, OSError) as exc:
            return [f"master of {parts.service!r}: unreachable ({exc})"]
        offset = int(replication.get("master_repl_offset", 0))
        replicas = [v for k, v in replication.items() if k.startswith("slave") and isinstance(v, dict)]
        lines.append(f"master  {address[0]}:{address[1]}  offset {offset}  replicas {len(replicas)}")
        for replica in replicas:
            lag = offset - int(replica.get("offset", 0))
            lines.append(
                f"replica {replica.get('ip')}:{replica.get('port')}  state {replica.get('state')}  "
                f"offset {replica.get('offset')}  lag {lag} bytes, {replica.get('lag', '?')} s since its last ack"
            )
        if not replicas:
            lines.append("replica none connected: a failover now would have no candidate")
        return lines

    # --- starting ---------------------------------------------------------------------------
    def start(self, home: Path, port: int, configured_url: str) -> Launched:
        binary = find_binary(
            "redis-server",
            (Path("/usr/bin/redis-server"),),
            hint="install it (`sudo apt-get install redis-server`, or `make setup`) or set WV_REDIS_URL",
        )
        service, db = DEFAULT_SERVICE, 0
        if is_sentinel_url(configured_url):
            parsed = parse_sentinel_url(configured_url)
            service, db = parsed.service, parsed.db
        self.stop(home, 0)  # leftovers of an earlier start (their pid files)
        ports = {"master": port, "replica": free_port()}
        sentinel_ports = [free_port() for _ in range(SENTINELS)]
        for node in DATA_NODES:
            data = home / node
            data.mkdir(parents=True, exist_ok=True)
            command = [
                str(binary),
                "--bind", "127.0.0.1",
                "--port", str(ports[node]),
                "--dir", str(data.resolve()),
                "--appendonly", "yes",
                "--save", "",
                "--daemonize", "no",
                "--logfile", "",
                "--pidfile", "",
            ]  # fmt: skip
            if node == "replica":
                command += ["--replicaof", "127.0.0.1", str(ports["master"])]
            self._spawn(command, data)
        master_url = f"redis://127.0.0.1:{ports['master']}/0"
        self._wait(home / "master", lambda: self._ping(master_url), "redis master")
        replica_url = f"redis://127.0.0.1:{ports['replica']}/0"
        self._wait(home / "replica", lambda: self._synced(replica_url), "redis replica (first sync)")
        for index, sentinel_port in enumerate(sentinel_ports, 1):
            directory = home / f"sentinel-{index}"
            directory.mkdir(parents=True, exist_ok=True)
            config = directory / "sentinel.conf"
            config.write_text(
                f"port {sentinel_port}\n"
                "bind 127.0.0.1\n"
                f"dir {directory.resolve()}\n"
                f"sentinel monitor {service} 127.0.0.1 {ports['master']} {QUORUM}\n"
                f"sentinel down-after-milliseconds {service} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {service} {FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {service} 1\n"
            )
            self._spawn([str(binary), str(config.resolve()), "--sentinel"], directory)
        url = f"redis+sentinel://{','.join(f'127.0.0.1:{p}' for p in sentinel_ports)}/{service}/{db}"
        for index, sentinel_port in enumerate(sentinel_ports, 1):
            self._wait(
                home / f"sentinel-{index}",
                lambda p=sentinel_port: self._sentinel_ready(p, service),  # type: ignore[misc]
                f"redis sentinel {index} (discovering the replica and the other sentinels)",
            )
        first = int((home / "sentinel-1" / "pid").read_text())
        return Launched(url=url, pid=first, port=sentinel_ports[0])

    def _spawn(self, command: list[str], directory: Path) -> None:
        process = spawn(command, directory)
        (directory / "pid").write_text(f"{process.pid}\n")
        (directory / "command.json").write_text(json.dumps(command) + "\n")
        self._processes[directory] = process

    def restart_node(self, home: Path, node: str, replica_of: tuple[str, int] | None = None) -> int:
        """Start a stopped node (``master``, ``replica``, ``sentinel-N``) again; its pid.

        A data node is started as a replica of ``replica_of`` (the current master: after a failover
        the old master must not come back as a master, even for a moment); the sentinels would
        otherwise convert it themselves. Its append-only file is replaced by a resync. Its own address
        is refused: a node told to replicate itself waits for itself for ever, and the sentinels
        leave a node that already calls itself a replica alone.
        """
        directory = home / node
        command: list[str] = json.loads((directory / "command.json").read_text())
        if "--replicaof" in command:
            at = command.index("--replicaof")
            del command[at : at + 3]
        if node in DATA_NODES and replica_of is not None:
            if str(replica_of[1]) == command[command.index("--port") + 1]:
                raise ValueError(f"{node} cannot replicate itself ({replica_of[0]}:{replica_of[1]})")
            command += ["--replicaof", replica_of[0], str(replica_of[1])]
        process = spawn(command, directory)
        (directory / "pid").write_text(f"{process.pid}\n")
        self._processes[directory] = process
        return process.pid

    def node_at(self, home: Path, port: int) -> tuple[str, int] | None:
        """(node name, pid) of the running data node listening on ``port``."""
        for node in DATA_NODES:
            pid_file = home / node / "pid"
            if pid_file.exists():
                pid = int(pid_file.read_text().strip() or 0)
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                except OSError:
                    continue
                if re.search(rf":{port}\b", cmdline) and self.process_name in cmdline:
                    return node, pid
        return None

    def _wait(self, directory: Path, probe: Any, what: str, timeout: float = 30.0) -> None:
        process = self._processes[directory]
        try:
            wait_healthy(probe, process.poll, what, directory, timeout)
        except ServiceError:
            self.stop(directory.parent, 0)
            raise

    @staticmethod
    def _ping(url: str) -> str | None:
        try:
            with redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1) as client:
                client.ping()
        except (redis.RedisError, OSError) as exc:
            return str(exc)
        return None

    @staticmethod
    def _synced(url: str) -> str | None:
        try:
            with redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1) as client:
                status = _info(client, "replication").get("master_link_status")
        except (redis.RedisError, OSError) as exc:
            return str(exc)
        return None if status == "up" else f"master_link_status:{status}"

    @staticmethod
    def _sentinel_ready(port: int, service: str) -> str | None:
        """None once the sentinel on ``port`` sees both other sentinels and a promotable replica."""
        try:
            with redis.Redis(
                port=port, socket_timeout=1, socket_connect_timeout=1, decode_responses=True
            ) as c:
                state = c.execute_command("SENTINEL", "MASTER", service)
                fields = (
                    state if isinstance(state, dict) else dict(zip(state[::2], state[1::2], strict=False))
                )
                others = int(fields.get("num-other-sentinels", 0))
                healthy = [r for r in c.sentinel_slaves(service) if _eligible(r)]
        except (redis.RedisError, OSError) as exc:
            return str(exc)
        if not healthy or others < SENTINELS - 1:
            return f"knows {len(healthy)} healthy replica(s) and {others} other sentinel(s)"
        return None

    # --- stopping ---------------------------------------------------------------------------
    def stop(self, home: Path, pid: int, timeout: float = 20.0) -> None:
        """Stop the sentinels first (no failover while the data servers go), then the data servers."""
        directories = sorted(home.glob("sentinel-*")) + [home / n for n in DATA_NODES]
        for directory in directories:
            pid_file = directory / "pid"
            if not pid_file.exists():
                continue
            recorded = int(pid_file.read_text().strip() or 0)
            if recorded and process_matches(recorded, self.process_name):
                terminate(recorded, self.process_name, timeout)
            process = self._processes.pop(directory, None)
            if process is not None:
                process.poll()  # reap our child
            pid_file.unlink(missing_ok=True)
        if pid and process_matches(pid, self.process_name):
            terminate(pid, self.process_name, timeout)

    def logs(self, home: Path, lines: int = 10) -> str:
        """The last lines of every node's log (for error messages and debugging)."""
        return "\n".join(
            f"--- {d.name}\n{log_tail(d, lines)}"
            for d in [home / n for n in DATA_NODES] + sorted(home.glob("sentinel-*"))
        )


def _eligible(replica: dict[str, Any]) -> bool:
    """Whether a sentinel's view of a replica lets it be promoted: up, linked, recently seen."""
    return bool(
        replica.get("is_slave")
        and not replica.get("is_sdown")
        and not replica.get("is_disconnected")
        and replica.get("master-link-status") == "ok"
    )


def wait_promoted(url: str, old: tuple[str, int], timeout: float = 30.0) -> tuple[str, int]:
    """The new master's address once the sentinels of ``url`` name another than ``old``."""
    parts = parse_sentinel_url(url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for host, port in parts.sentinels:
            try:
                with redis.Redis(host=host, port=port, socket_timeout=1, socket_connect_timeout=1) as c:
                    found = c.sentinel_get_master_addr_by_name(parts.service)
            except (redis.RedisError, OSError):
                continue
            if found:
                host = found[0].decode() if isinstance(found[0], bytes) else str(found[0])
                if (host, int(found[1])) != tuple(old):
                    return host, int(found[1])
        time.sleep(0.05)
    raise ServiceError(f"no new master for {parts.service!r} within {timeout:.0f} s")
