"""Fault injection: private services that can be stopped, killed, frozen and refused on demand.

Used by the reliability tests (``tests/reliability``) and the soak (``python -m bench.soak``).
Every helper acts only on what it started (by pid) or on the one database it is given.

- :class:`Broker`: a Tansu broker on a fixed port across restarts. The Tansu build we ship has
  only memory storage and S3 compiled in (``postgres://``, ``sqlite://`` fail with
  ``FeatureNotEnabled``): with memory storage a restart loses every message, including ones it
  acknowledged and nobody consumed yet, and the committed consumer offsets. Given an
  :class:`S3Store` (moto's S3 look-alike in its own process) the broker keeps its log and the
  group offsets across restarts and SIGKILLs, like a real durable cluster.
- :class:`RedisServer`: a private ``redis-server`` without persistence (a restart starts empty).
- :class:`SentinelRedis`: a private master + replica + three sentinels; SIGKILL the master, wait
  for the promotion, bring the old master back as a replica.
- :class:`PostgresOutage`: terminate every connection to one database and refuse new ones
  (``ALLOW_CONNECTIONS false``) for a while, on the shared server, touching no other database.
- :func:`corrupt_file`: overwrite or truncate a file in place (a model gone bad on disk).
- :class:`VanishingServer`: accepts TCP connections and closes them (a camera that disappears).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import redis
from psycopg import sql

from foundation.redis_connect import connect, parse_sentinel_url
from wv.services.base import free_port
from wv.services.kafka import api_versions_probe, tansu_binary
from wv.services.redis_sentinel import DATA_NODES, RedisSentinelService, wait_promoted


class FaultError(RuntimeError):
    """A fault could not be injected or healed (a service did not come up or go down)."""


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``predicate`` until it is truthy; :class:`FaultError` naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise FaultError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)


class ManagedProcess:
    """One subprocess with its output in a log file; stopped, killed or frozen by its own pid."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.command = list(command)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        if self.alive:
            raise FaultError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n--- start {self.starts + 1} at {time.strftime('%H:%M:%S')} ---\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,  # a signal to the test's group never reaches it by accident
            )
        self.starts += 1

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    def _signal(self, sig: signal.Signals) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(sig)

    def freeze(self) -> None:
        self._signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed."""
        if self.proc is None:
            return
        self._signal(signal.SIGCONT)
        self._signal(signal.SIGKILL)
        self.proc.wait(15)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        if self.proc is None:
            return None
        self._signal(signal.SIGCONT)
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        return self.proc.returncode

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class S3Store:
    """moto's S3 server in its own process, with one bucket; storage for a durable broker."""

    BUCKET = "tansu"

    def __init__(self, home: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = ManagedProcess(
            "s3",
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            home / "s3.log",
        )

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url, timeout=1):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    def start(self) -> None:
        self.process.start()
        wait_until(self._answers, 30, f"S3 look-alike on port {self.port}", 0.1)
        request = urllib.request.Request(f"{self.url}/{self.BUCKET}", method="PUT")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def environment(self) -> dict[str, str]:
        """What Tansu's object store reads to reach it."""
        return {
            "AWS_ENDPOINT": self.url,
            "AWS_ACCESS_KEY_ID": "wv-test",
            "AWS_SECRET_ACCESS_KEY": "wv-test",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
        }

    def stop(self) -> None:
        self.process.stop(10)


class Broker:
    """A Tansu broker of its own on one port for its whole life, so clients find it again."""

    def __init__(self, home: Path, storage: S3Store | None = None, port: int | None = None) -> None:
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.storage = storage
        listener = f"tcp://{self.bootstrap}"
        engine = f"s3://{S3Store.BUCKET}/" if storage is not None else "memory://tansu/"
        env = {**os.environ, **(storage.environment() if storage is not None else {})}
        self.process = ManagedProcess(
            "broker",
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                listener,
                "--advertised-listener-url",
                listener,
                "--storage-engine",
                engine,
            ],
            home / "broker.log",
            env=env,
        )

    @property
    def durable(self) -> bool:
        return self.storage is not None

    def start(self) -> None:
        self.process.start()
        try:
            wait_until(
                lambda: api_versions_probe(self.bootstrap, 0.5) is None, 20, f"broker {self.bootstrap}"
            )
        except FaultError:
            self.process.kill()
            raise FaultError(f"broker did not start; log:\n{self.process.log_text()[-2000:]}") from None
        # Tansu does not exit when its port is taken: something else may have answered.
        if not self.process.alive:
            raise FaultError(f"broker exited at start; log:\n{self.process.log_text()[-2000:]}")

    def stop(self) -> None:
        """Graceful stop (SIGTERM)."""
        self.process.stop(10)

    def kill(self) -> None:
        self.process.kill()

    def freeze(self) -> None:
        """SIGSTOP: connections stay open but nothing answers (a hung broker)."""
        self.process.freeze()

    def thaw(self) -> None:
        self.process.thaw()


class RedisServer:
    """A private redis-server without persistence: a restart comes back empty."""

    def __init__(self, home: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = ManagedProcess(
            "redis",
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(home),
            ],
            home / "redis.log",
        )

    def _answers(self) -> bool:
        try:
            with connect(self.url, socket_timeout=0.5, socket_connect_timeout=0.5) as client:
                return bool(client.ping())
        except (redis.RedisError, OSError):
            return False

    def start(self) -> None:
        self.process.start()
        wait_until(self._answers, 15, f"redis-server on port {self.port}")

    def kill(self) -> None:
        self.process.kill()

    def stop(self) -> None:
        self.process.stop(10)


class SentinelRedis:
    """Redis with automatic failover (``wv.services.redis_sentinel``: a master, a replica, three
    sentinels) whose master can be SIGKILLed and brought back as a replica."""

    def __init__(self, home: Path, service: str = "wv-redis", db: int = 0) -> None:
        self.home = home
        self.plugin = RedisSentinelService()
        self._configured = f"redis+sentinel://127.0.0.1:26379/{service}/{db}"
        self.url = ""
        self.killed: str | None = None
        """The data node killed last (``master`` or ``replica``), until :meth:`restore`."""
        self._killed_address: tuple[str, int] | None = None

    def start(self) -> None:
        self.url = self.plugin.start(self.home, free_port(), self._configured).url

    def master(self) -> tuple[str, int]:
        """The master's address as the first answering sentinel names it."""
        named = self._named_masters()
        if not named:
            raise FaultError("no sentinel names a master")
        return named[0]

    def _named_masters(self) -> list[tuple[str, int]]:
        """The master each answering sentinel names (they disagree for a moment during a failover)."""
        parts = parse_sentinel_url(self.url)
        named = []
        for host, port in parts.sentinels:
            try:
                with redis.Redis(host=host, port=port, socket_timeout=1, socket_connect_timeout=1) as c:
                    found = c.sentinel_get_master_addr_by_name(parts.service)
            except (redis.RedisError, OSError):
                continue
            if found:
                name = found[0].decode() if isinstance(found[0], bytes) else str(found[0])
                named.append((name, int(found[1])))
        return named

    def _promoted(self) -> tuple[str, int] | None:
        """The master once every sentinel names the same one and it is not the killed node."""
        named = set(self._named_masters())
        if len(named) != 1 or self._killed_address in named:
            return None
        return named.pop()

    def kill_master(self) -> tuple[str, int]:
        """SIGKILL the master's redis-server (the machine is gone); returns its address."""
        address = self.master()
        found = self.plugin.node_at(self.home, address[1])
        if found is None:
            raise FaultError(f"no redis-server of ours listens on {address[1]}")
        self.killed, pid = found
        self._killed_address = address
        os.kill(pid, signal.SIGKILL)
        return address

    def replica_pid(self) -> int:
        """The pid of the data node that is not the master."""
        master = self.plugin.node_at(self.home, self.master()[1])
        for node in DATA_NODES:
            if master is None or node != master[0]:
                return int((self.home / node / "pid").read_text())
        raise FaultError("no replica")

    def cut_replica(self) -> int:
        """SIGSTOP the replica and drop its link: it receives nothing the master writes from now on
        (the master keeps it in its backlog); returns the replica's pid for the SIGCONT."""
        pid = self.replica_pid()
        os.kill(pid, signal.SIGSTOP)  # frozen, it cannot reconnect and catch up
        host, port = self.master()
        with redis.Redis(host=host, port=port, socket_timeout=2) as c:
            c.client_kill_filter(_type="replica")  # what a stopped process would still read from its socket
        return pid

    def wait_promoted(self, old: tuple[str, int], timeout: float = 30.0) -> tuple[str, int]:
        return wait_promoted(self.url, old, timeout)

    def restore(self, timeout: float = 30.0) -> None:
        """Start the killed node again as a replica of the new master; return once it is synced and
        every sentinel counts it as a healthy replica (so the next kill can fail over)."""
        if self.killed is None:
            return
        # Not the first sentinel's answer: one that has not switched yet names the killed node
        # itself (a soak restarted it as a replica of its own address, where it stayed).
        deadline = time.monotonic() + timeout
        while (master := self._promoted()) is None:
            if time.monotonic() > deadline:
                raise FaultError(f"every sentinel naming the promoted master: not within {timeout:.0f} s")
            time.sleep(0.05)
        self.plugin.restart_node(self.home, self.killed, replica_of=master)
        self.killed = self._killed_address = None
        wait_until(
            lambda: self._replicas_ready(master), timeout, "the restarted redis node synced as a replica"
        )

    def _replicas_ready(self, master: tuple[str, int]) -> bool:
        try:
            with redis.Redis(host=master[0], port=master[1], socket_timeout=1, socket_connect_timeout=1) as c:
                info = c.info("replication")
            if int(info.get("connected_slaves", 0)) < 1 or info.get("slave0", {}).get("state") != "online":
                return False
            parts = parse_sentinel_url(self.url)
            for host, port in parts.sentinels:
                with redis.Redis(
                    host=host, port=port, socket_timeout=1, socket_connect_timeout=1, decode_responses=True
                ) as c:
                    replicas = c.sentinel_slaves(parts.service)
                if not any(
                    r.get("is_slave") and not r.get("is_sdown") and r.get("master-link-status") == "ok"
                    for r in replicas
                ):
                    return False
        except (redis.RedisError, OSError):
            return False
        return True

    def stop(self) -> None:
        self.plugin.stop(self.home, 0, timeout=5)


def _admin_url(database_url: str) -> str:
    return urlsplit(database_url)._replace(path="/postgres").geturl()


class PostgresOutage:
    """Kill every connection to one database and refuse new ones until :meth:`end`.

    Uses ``ALTER DATABASE … ALLOW_CONNECTIONS false`` plus ``pg_terminate_backend`` from the
    maintenance database, so the server and its other databases are untouched. Connections
    already refused see ``FATAL: database "…" is not currently accepting connections``.
    """

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.dbname = urlsplit(database_url).path.lstrip("/")
        self.started: float | None = None
        self.terminated = 0

    def _admin(self) -> psycopg.Connection:
        return psycopg.connect(_admin_url(self.database_url), autocommit=True, connect_timeout=10)

    def kill_connections(self) -> int:
        """Terminate every backend connected to the database; returns how many."""
        with self._admin() as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (self.dbname,),
            ).fetchall()
        return sum(1 for (ok,) in rows if ok)

    def begin(self) -> None:
        with self._admin() as conn:
            conn.execute(
                sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(self.dbname))
            )
        self.started = time.monotonic()
        self.terminated = self.kill_connections()

    def end(self) -> None:
        with self._admin() as conn:
            conn.execute(
                sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(sql.Identifier(self.dbname))
            )

    @contextlib.contextmanager
    def during(self) -> Iterator[PostgresOutage]:
        """``with outage.during(): time.sleep(30)`` — always lets connections in again."""
        self.begin()
        try:
            yield self
        finally:
            self.end()


def corrupt_file(path: Path, how: str = "garbage") -> None:
    """Damage a file in place: ``garbage`` overwrites its head with junk, ``truncate`` halves it."""
    size = path.stat().st_size
    if how == "truncate":
        with path.open("r+b") as f:
            f.truncate(size // 2)
    elif how == "garbage":
        with path.open("r+b") as f:
            f.write(os.urandom(min(size, 4096)))
    else:
        raise ValueError(f"unknown corruption {how!r}: garbage or truncate")


class VanishingServer:
    """A TCP server that accepts each connection and closes it at once: a camera (RTSP) or any
    peer that disappears the moment it is reached. Counts the connections it dropped."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port = int(self._sock.getsockname()[1])
        self.dropped = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="vanishing-server", daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            conn.close()
            self.dropped += 1

    def __enter__(self) -> VanishingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()
