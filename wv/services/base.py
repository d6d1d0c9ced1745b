"""What every local service looks like to ``wv services``: probe a URL, start one, stop it.

A service is a plugin (one module each: PostgreSQL, Redis, the Kafka-protocol broker). The
manager asks each whether the configured URL answers; only when it does not does it start a
private instance under ``<state_dir>/services/<name>/`` on a free loopback port.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar


class ServiceError(RuntimeError):
    """A service could not be started, reached or stopped; the message says what to do."""


@dataclass(frozen=True)
class Launched:
    """A service instance started by ``wv services up``: what to record and how to find it again."""

    url: str
    pid: int
    port: int


class Service(ABC):
    """One kind of backing service."""

    name: ClassVar[str]
    variable: ClassVar[str]  # the WV_ variable holding its URL
    field: ClassVar[str]  # the Settings field of that variable
    process_name: ClassVar[str]  # what the running process's command line contains
    folder: ClassVar[str] = ""  # its folder under <state_dir>/services/ (default: its name)
    replicated: ClassVar[bool] = False  # a single server answering at the default URL does not do

    @abstractmethod
    def probe(self, url: str, timeout: float = 3.0) -> str | None:
        """None when a healthy server answers at ``url``; otherwise why not."""

    @abstractmethod
    def start(self, home: Path, port: int, configured_url: str) -> Launched:
        """Start a private instance in ``home`` listening on 127.0.0.1:``port``, wait until healthy."""

    def heal(self, home: Path) -> None:
        """Restart what is down in a replicated service that still answers (a dead member)."""
        return None

    def describe(self, url: str, home: Path) -> list[str]:
        """Extra status lines (members, roles, replication lag) for a service with several servers."""
        return []

    def stop(self, home: Path, pid: int, timeout: float = 20.0) -> None:
        """Stop the instance started earlier (only if ``pid`` is still that process)."""
        terminate(pid, self.process_name, timeout)

    def purge(self, home: Path) -> None:
        """Delete the stopped instance's data and logs, following links out of ``home``."""
        for link in [p for p in home.iterdir() if p.is_symlink()] if home.exists() else []:
            target = link.resolve()
            if target.is_dir():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)
        shutil.rmtree(home, ignore_errors=True)


def find_binary(name: str, candidates: Sequence[Path] = (), hint: str = "") -> Path:
    """The first existing executable among ``candidates`` or on PATH, else a clear error."""
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    found = shutil.which(name)
    if found:
        return Path(found)
    raise ServiceError(f"{name} not found{': ' + hint if hint else ''}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spawn(command: Sequence[str], home: Path, **kwargs: object) -> subprocess.Popen[bytes]:
    """Start a long-lived server in its own session, its output in ``home/server.log`` (new each start)."""
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "server.log", "wb") as log:
        return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=home,
            **kwargs,
        )


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_PORT_TAKEN = re.compile(r"(?i)address (already )?in use|AddrInUse")


def port_taken(text: str) -> bool:
    """Whether a server's output says its port was taken (the manager then tries another port)."""
    return bool(_PORT_TAKEN.search(text))


def log_tail(home: Path, lines: int = 15) -> str:
    path = home / "server.log"
    if not path.exists():
        return "(no log)"
    text = _ANSI.sub("", path.read_text(errors="replace"))
    return "\n".join(text.splitlines()[-lines:])


def wait_healthy(
    probe: Callable[[], str | None],
    exited: Callable[[], int | None],
    what: str,
    home: Path,
    timeout: float,
) -> None:
    """Poll ``probe`` until healthy; fail fast with the server's log when the process dies."""
    deadline = time.monotonic() + timeout
    reason: str | None = "not started"
    while time.monotonic() < deadline:
        code = exited()
        if port_taken(log_tail(home, 50)):
            raise ServiceError(f"{what}: address already in use; log:\n{log_tail(home)}")
        if code is not None:
            raise ServiceError(f"{what} exited with code {code} while starting; log:\n{log_tail(home)}")
        reason = probe()
        if reason is None:
            return
        time.sleep(0.1)
    raise ServiceError(f"{what} not healthy after {timeout:.0f} s ({reason}); log:\n{log_tail(home)}")


def process_matches(pid: int, needle: str) -> bool:
    """Whether ``pid`` is alive and its command line mentions ``needle`` (guards reused pids)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return needle in cmdline


def child_pids(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (e.g. a postmaster's backends and auxiliary processes)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rpartition(")")[2].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def terminate(pid: int, needle: str, timeout: float) -> None:
    """SIGTERM ``pid`` (if it is still ours), SIGKILL after ``timeout`` seconds."""
    if not process_matches(pid, needle):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process_matches(pid, needle):
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
