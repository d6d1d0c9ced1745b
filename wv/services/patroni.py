"""PostgreSQL with a synchronous standby: one etcd and two Patroni members on loopback.

``WV_SERVICES_HA=postgres`` makes ``wv services up`` start this instead of the single instance.
Patroni (Debian package ``patroni``) runs each member's PostgreSQL, holds the leader key in etcd
(``etcd-server``) and promotes the synchronous standby when the leader's key expires. Clients
reach whichever member leads through one libpq multi-host URL with
``target_session_attrs=read-write``: libpq tries the hosts in order and keeps the one that accepts
writes, so a failover needs no configuration change, only a reconnect.

Durability: ``synchronous_mode`` makes Patroni name the standby in ``synchronous_standby_names``
and promote only that standby; with ``synchronous_commit = on`` a commit returns once the
standby has flushed it, so a committed batch (and the Kafka offset committed after it) survives
the leader's death. Every client reads from the leader too (the URL only ever reaches it), so
read-your-writes holds without ``remote_apply``.

Timings are sized for tests and a laptop (``ttl`` 10 s, ``loop_wait`` 2 s, ``retry_timeout``
5 s: writes resume about 9 s after the leader dies); docs/reliability.md gives production values.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from wv.services.base import (
    Launched,
    Service,
    ServiceError,
    alive,
    child_pids,
    find_binary,
    free_port,
    process_matches,
    spawn,
    terminate,
    wait_healthy,
)
from wv.services.postgres import as_user, probe_postgres, server_bindir, server_home, server_owner

SCOPE = "wv"
MEMBERS = ("member-0", "member-1")
DCS = {
    "ttl": 10,
    "loop_wait": 2,
    "retry_timeout": 5,
    "maximum_lag_on_failover": 1048576,
    "synchronous_mode": True,
    "postgresql": {
        "use_pg_rewind": True,
        "use_slots": True,
        "parameters": {
            "wal_level": "replica",
            "hot_standby": "on",
            "wal_log_hints": "on",
            "max_wal_senders": 10,
            "max_replication_slots": 10,
            "synchronous_commit": "on",
        },
    },
}
_HINT = "install the Debian packages patroni and etcd-server (`make setup` does) or set WV_DATABASE_URL"


@dataclass(frozen=True)
class Member:
    """One Patroni member as its REST API reports it."""

    name: str
    role: str  # leader | sync_standby | replica
    state: str  # running | streaming | stopped | starting …
    port: int
    lag_bytes: int | None

    def line(self) -> str:
        lag = "" if self.lag_bytes is None else f"  lag {self.lag_bytes} B"
        return f"{self.name:<9} 127.0.0.1:{self.port:<6} {self.role:<13} {self.state}{lag}"


@dataclass(frozen=True)
class Layout:
    """The ports of one local cluster, kept in ``cluster.json`` so a restart reuses its data."""

    etcd_client: int
    etcd_peer: int
    postgres: tuple[int, int]
    rest: tuple[int, int]

    @classmethod
    def fresh(cls, first_port: int) -> Layout:
        return cls(free_port(), free_port(), (first_port, free_port()), (free_port(), free_port()))

    def url(self, database: str) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.postgres)
        return f"postgresql://postgres@{hosts}/{database}?target_session_attrs=read-write"

    def rest_url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.rest[index]}"


class PatroniService(Service):
    name = "postgres"
    variable = "WV_DATABASE_URL"
    field = "database_url"
    folder = "postgres-ha"
    replicated = True
    process_name = "etcd"  # the record's pid: the cluster's etcd (members come and go in failovers)

    def probe(self, url: str, timeout: float = 3.0) -> str | None:
        """None when the multi-host URL reaches a writable leader."""
        return probe_postgres(url, timeout)

    # --- layout ---------------------------------------------------------------------------
    @staticmethod
    def layout(home: Path) -> Layout | None:
        path = home / "cluster.json"
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        return Layout(data["etcd_client"], data["etcd_peer"], tuple(data["postgres"]), tuple(data["rest"]))  # type: ignore[arg-type]

    @staticmethod
    def _save_layout(home: Path, layout: Layout) -> None:
        home.mkdir(parents=True, exist_ok=True)
        record = {
            "etcd_client": layout.etcd_client,
            "etcd_peer": layout.etcd_peer,
            "postgres": list(layout.postgres),
            "rest": list(layout.rest),
        }
        (home / "cluster.json").write_text(json.dumps(record, indent=2) + "\n")

    # --- start ----------------------------------------------------------------------------
    def start(self, home: Path, port: int, configured_url: str) -> Launched:
        patroni = find_binary("patroni", (Path("/usr/bin/patroni"),), hint=_HINT)
        find_binary("etcd", (Path("/usr/bin/etcd"),), hint=_HINT)
        home = home.resolve()
        layout = self.layout(home) or Layout.fresh(port)
        self._save_layout(home, layout)
        etcd_pid = self._start_etcd(home / "etcd", layout)
        for index in range(len(MEMBERS)):
            self.start_member(home, index, patroni)
        database = urlsplit(configured_url).path.lstrip("/").partition("?")[0] or "warehouse_vision"
        url = layout.url(database)
        wait_healthy(lambda: self.probe(url, 1.0), lambda: None, "Patroni leader", home, 90)
        self.wait_for_sync_standby(home, timeout=90)
        return Launched(url=url, pid=etcd_pid, port=layout.postgres[0])

    @staticmethod
    def etcd_pid(home: Path) -> int | None:
        """The running etcd of the cluster under ``home``, or None."""
        path = home / "etcd" / "etcd.pid"
        pid = int(path.read_text()) if path.exists() else 0
        return pid if pid and process_matches(pid, "etcd") else None

    def _start_etcd(self, home: Path, layout: Layout) -> int:
        running = self.etcd_pid(home.parent)
        if running is not None:
            return running
        pid_file = home / "etcd.pid"
        peer = f"http://127.0.0.1:{layout.etcd_peer}"
        client = f"http://127.0.0.1:{layout.etcd_client}"
        command = [
            "etcd", "--name", "wv-etcd", "--data-dir", str(home / "data"),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"wv-etcd={peer}", "--initial-cluster-state", "new",
        ]  # fmt: skip
        process = spawn(command, home)
        pid_file.write_text(str(process.pid))
        wait_healthy(lambda: _http_problem(f"{client}/health"), process.poll, "etcd", home, 30)
        return process.pid

    def member_home(self, home: Path, index: int) -> Path:
        return home / MEMBERS[index]

    def start_member(self, home: Path, index: int, patroni: Path | None = None) -> int:
        """Start member ``index``'s Patroni (it starts, rewinds or clones its PostgreSQL)."""
        patroni = patroni or find_binary("patroni", (Path("/usr/bin/patroni"),), hint=_HINT)
        layout = self.layout(home)
        if layout is None:
            raise ServiceError(f"no Patroni cluster recorded under {home}")
        member = self.member_home(home, index)
        pid = self.member_pid(home, index)
        if pid is not None:
            return pid
        owner = server_owner()
        where = server_home(member, owner, ("data", "server.log", "patroni.yml", "pgpass"))
        config = where / "patroni.yml"
        config.write_text(yaml.safe_dump(self._config(where, layout, index), sort_keys=False))
        if owner:
            for path in (where, config):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        # In ``where``: its user may not be able to enter ``member`` (a private temp folder).
        process = spawn([str(patroni), str(config)], where, **as_user(owner))
        (member / "patroni.pid").write_text(str(process.pid))
        return process.pid

    def _config(self, where: Path, layout: Layout, index: int) -> dict[str, Any]:
        return {
            "scope": SCOPE,
            "name": MEMBERS[index],
            "log": {"level": "INFO"},
            "restapi": {
                "listen": f"127.0.0.1:{layout.rest[index]}",
                "connect_address": f"127.0.0.1:{layout.rest[index]}",
            },
            "etcd3": {"hosts": f"127.0.0.1:{layout.etcd_client}"},
            "bootstrap": {
                "dcs": DCS,
                "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}, "no-sync"],
                "pg_hba": [
                    "host replication postgres 127.0.0.1/32 trust",
                    "host all all 127.0.0.1/32 trust",
                    "local all all trust",
                ],
            },
            "postgresql": {
                "listen": f"127.0.0.1:{layout.postgres[index]}",
                "connect_address": f"127.0.0.1:{layout.postgres[index]}",
                "data_dir": str(where / "data"),
                "bin_dir": str(server_bindir()),
                "pgpass": str(where / "pgpass"),
                "authentication": {
                    "superuser": {"username": "postgres"},
                    "replication": {"username": "postgres"},
                    "rewind": {"username": "postgres"},
                },
                "parameters": {"unix_socket_directories": str(where)},
            },
        }

    # --- members --------------------------------------------------------------------------
    def member_pid(self, home: Path, index: int) -> int | None:
        """The running Patroni of member ``index``, or None."""
        path = self.member_home(home, index) / "patroni.pid"
        if not path.exists():
            return None
        pid = int(path.read_text())
        return pid if process_matches(pid, "patroni") else None

    def members(self, home: Path) -> list[Member]:
        """The cluster as any answering member sees it (empty when none answers)."""
        layout = self.layout(home)
        for index in range(len(MEMBERS)) if layout else ():
            try:
                cluster = _get_json(f"{layout.rest_url(index)}/cluster")  # type: ignore[union-attr]
            except (OSError, ValueError):
                continue
            return [
                Member(
                    name=m["name"],
                    role=m["role"],
                    state=m["state"],
                    port=int(m["port"]),
                    lag_bytes=None if m["role"] == "leader" else _lag(m.get("lag")),
                )
                for m in cluster.get("members", [])
            ]
        return []

    def leader(self, home: Path) -> int | None:
        """The index of the member that leads now."""
        for member in self.members(home):
            if member.role == "leader" and member.state == "running":
                return MEMBERS.index(member.name)
        return None

    def wait_for_sync_standby(self, home: Path, timeout: float) -> None:
        """Wait until a member is the streaming synchronous standby (commits then wait for it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(
                m.role == "sync_standby" and m.state in ("running", "streaming") for m in self.members(home)
            ):
                return
            time.sleep(0.2)
        lines = "\n".join("  " + m.line() for m in self.members(home)) or "  (no member answers)"
        raise ServiceError(f"no synchronous standby after {timeout:.0f} s:\n{lines}")

    def postgres_pids(self, home: Path, index: int) -> list[int]:
        """Member ``index``'s postmaster and its children (backends, WAL sender/receiver, startup).

        Patroni starts PostgreSQL in a session of its own, so the postmaster's pid comes from
        ``postmaster.pid`` and its children from their parent pid.
        """
        postmaster_file = self.member_home(home, index) / "data" / "postmaster.pid"
        try:
            postmaster = int(postmaster_file.read_text().splitlines()[0])
        except (OSError, IndexError, ValueError):
            return []
        return [postmaster, *child_pids(postmaster)] if process_matches(postmaster, "postgres") else []

    def kill_member(self, home: Path, index: int) -> None:
        """SIGKILL member ``index``'s Patroni, PostgreSQL and its backends, as if its machine died."""
        patroni = self.member_pid(home, index)
        victims = [*([patroni] if patroni is not None else []), *self.postgres_pids(home, index)]
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in victims) and time.monotonic() < deadline:
            time.sleep(0.05)

    def switchover(self, home: Path, candidate: int) -> None:
        """A planned switchover to member ``candidate`` through the leader's REST API."""
        layout = self.layout(home)
        leader = self.leader(home)
        if layout is None or leader is None:
            raise ServiceError("switchover needs a running leader")
        body = json.dumps({"leader": MEMBERS[leader], "candidate": MEMBERS[candidate]}).encode()
        request = urllib.request.Request(f"{layout.rest_url(leader)}/switchover", data=body, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            raise ServiceError(f"switchover refused: {exc.read().decode(errors='replace')}") from None

    def heal(self, home: Path) -> None:
        """Start the members that are down: each rejoins as a standby (pg_rewind or a re-clone)."""
        for index in range(len(MEMBERS)):
            if self.member_pid(home, index) is None:
                self.start_member(home, index)

    def describe(self, url: str, home: Path) -> list[str]:
        """The etcd (without it no member may lead: a leader steps down) and each member's role and lag."""
        layout = self.layout(home)
        lines = []
        if layout is not None:
            problem = _http_problem(f"http://127.0.0.1:{layout.etcd_client}/health")
            state = "healthy" if problem is None else f"UNREACHABLE ({problem}): no member can lead"
            lines.append(f"{'etcd':<9} 127.0.0.1:{layout.etcd_client:<6} {state}")
        return lines + ([m.line() for m in self.members(home)] or ["(no Patroni member answers)"])

    # --- stop -----------------------------------------------------------------------------
    def stop(self, home: Path, pid: int, timeout: float = 30.0) -> None:
        """Stop the standby first (the leader then has nobody to hand over to), the leader, etcd."""
        leader = self.leader(home)
        for index in sorted(range(len(MEMBERS)), key=lambda i: i == leader):
            member = self.member_pid(home, index)
            if member is not None:
                terminate(member, "patroni", timeout)  # Patroni stops its PostgreSQL first
        terminate(pid, self.process_name, timeout)

    def purge(self, home: Path) -> None:
        for index in range(len(MEMBERS)):
            Service.purge(self, self.member_home(home, index))
        Service.purge(self, home)


def _lag(value: object) -> int | None:
    return int(value) if isinstance(value, int | float) else None


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=2) as response:
        data: dict[str, Any] = json.loads(response.read())
        return data


def _http_problem(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            response.read()
    except (OSError, ValueError) as exc:
        return str(exc)
    return None
