"""PostgreSQL: probed with a connection; started locally from the Debian server packages.

``initdb`` and ``postgres`` refuse to run as root, so when ``wv`` runs as root the cluster
belongs to a dedicated system user (``wv-postgres``, created on first use). The server listens
on 127.0.0.1 only, with trust authentication for the loopback: a development convenience that
lets any local user connect, which is why it never listens on another interface.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

from wv.services.base import Launched, Service, ServiceError, find_binary, terminate, wait_healthy

SYSTEM_USER = "wv-postgres"
_HINT = (
    "install the Debian package postgresql (`sudo apt-get install postgresql`, or `make setup`) "
    "or set WV_DATABASE_URL"
)


def server_bindir() -> Path:
    """The newest installed server's bin directory (Debian keeps them off PATH)."""
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    initdb = find_binary("initdb", versions[-1:], hint=_HINT)
    return initdb.resolve().parent


def _ensure_system_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        pass
    useradd = find_binary("useradd", (Path("/usr/sbin/useradd"),), hint="needed to create the postgres user")
    subprocess.run(
        [
            str(useradd),
            "--system",
            "--user-group",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            SYSTEM_USER,
        ],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(SYSTEM_USER)


def server_owner() -> pwd.struct_passwd | None:
    """The user PostgreSQL runs as: ``wv-postgres`` when ``wv`` runs as root, else ``wv``'s own."""
    return _ensure_system_user() if os.geteuid() == 0 else None


def as_user(owner: pwd.struct_passwd | None) -> dict[str, object]:
    """subprocess arguments that run a command as ``owner`` (nothing to change when not root)."""
    return {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []} if owner else {}


def _reachable_by(user: pwd.struct_passwd, path: Path) -> bool:
    """Whether ``user`` can traverse every parent of ``path`` (e.g. not true under /root)."""
    probe = subprocess.run(
        ["test", "-x", str(path)], user=user.pw_uid, group=user.pw_gid, extra_groups=[], check=False
    )
    return probe.returncode == 0


def server_home(
    home: Path, owner: pwd.struct_passwd | None, names: tuple[str, ...] = ("data", "server.log")
) -> Path:
    """Where a server's ``names`` live: ``home``, unless the server's user cannot reach it.

    When the checkout is private to root (e.g. under /root), they go where that user can reach,
    linked from ``home`` so the layout looks the same.
    """
    home.mkdir(parents=True, exist_ok=True)
    if owner is None:
        return home
    if _reachable_by(owner, home.parent.resolve()):
        os.chown(home, owner.pw_uid, owner.pw_gid)
        return home
    digest = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:12]
    outside = Path("/var/lib") / SYSTEM_USER / digest
    outside.mkdir(parents=True, exist_ok=True)
    for path in (outside.parent, outside):
        os.chown(path, owner.pw_uid, owner.pw_gid)
    for name in names:
        if not (home / name).is_symlink():
            (home / name).unlink(missing_ok=True)
            (home / name).symlink_to(outside / name)
    return outside


def probe_postgres(url: str, timeout: float = 3.0) -> str | None:
    """None when a server accepts a connection at ``url`` (a missing database counts: `wv db upgrade`
    creates it); otherwise why not. For a multi-host URL: when a writable member answers."""
    try:
        psycopg.connect(url, connect_timeout=max(1, round(timeout))).close()
    except psycopg.OperationalError as exc:
        message = str(exc).strip()
        if re.search(r'database "[^"]+" does not exist', message):
            return None
        return message.splitlines()[0] if message else type(exc).__name__
    return None


class PostgresService(Service):
    name = "postgres"
    variable = "WV_DATABASE_URL"
    field = "database_url"
    process_name = "postgres"

    def probe(self, url: str, timeout: float = 3.0) -> str | None:
        return probe_postgres(url, timeout)

    def start(self, home: Path, port: int, configured_url: str) -> Launched:
        bindir = server_bindir()
        owner = server_owner()
        as_owner = as_user(owner)
        cluster = server_home(home.resolve(), owner)
        data, log = cluster / "data", cluster / "server.log"
        if owner and not log.exists():
            log.touch()
            os.chown(log, owner.pw_uid, owner.pw_gid)
        if not (data / "PG_VERSION").exists():
            if data.exists():
                shutil.rmtree(data)  # a half-initialised cluster from an interrupted run
            initdb = [
                str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync",
            ]  # fmt: skip
            done = subprocess.run(initdb, capture_output=True, text=True, check=False, **as_owner)  # type: ignore[call-overload]
            if done.returncode != 0:
                raise ServiceError(f"initdb failed in {data}:\n{done.stderr.strip()[-2000:]}")
        options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories=''"
        pg_ctl = [
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(log),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        ]
        started = subprocess.run(pg_ctl, capture_output=True, text=True, check=False, **as_owner)  # type: ignore[call-overload]
        if started.returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:]) if log.exists() else ""
            raise ServiceError(f"PostgreSQL did not start on port {port}: {started.stdout.strip()}\n{tail}")
        pid = int((data / "postmaster.pid").read_text().splitlines()[0])
        database = urlsplit(configured_url).path.lstrip("/") or "warehouse_vision"
        url = f"postgresql://postgres@127.0.0.1:{port}/{database}"
        wait_healthy(lambda: self.probe(url, 1.0), lambda: None, f"PostgreSQL on port {port}", home, 30)
        return Launched(url=url, pid=pid, port=port)

    def stop(self, home: Path, pid: int, timeout: float = 30.0) -> None:
        data = home / "data"
        if (data / "postmaster.pid").exists():
            as_owner = as_user(pwd.getpwnam(SYSTEM_USER) if os.geteuid() == 0 else None)
            command = [str(server_bindir() / "pg_ctl"), "-D", str(data.resolve()), "-m", "fast", "-w", "stop"]
            subprocess.run(command, capture_output=True, check=False, **as_owner)  # type: ignore[call-overload]
        terminate(pid, self.process_name, timeout)
