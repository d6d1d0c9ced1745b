"""``wv ui``: the Dagster webserver and daemon on WV_DAGSTER_HOST:WV_DAGSTER_PORT, started and stopped as one.

Each process runs in its own session (process group, as with ``setsid``): ``dagster`` started from a
script ignores signals otherwise, and stopping the group also stops the code-server children.
PID files and logs live in ``$DAGSTER_HOME`` (``<state>/dagster``).

- ``wv ui``: start both, wait until the webserver answers, print the URL, stop both on Ctrl-C.
- ``wv ui --background``: the same, but leave them running (``make demo`` does this).
- ``wv ui --stop`` / ``wv ui stop``: stop them; ``wv ui status``: are they running.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import httpx
import typer

from orchestration.instance import REPO_ROOT, WORKSPACE, dagster_home, prepare_instance
from orchestration.settings import OrchestrationSettings

app = typer.Typer(help="Start the Dagster webserver and daemon.", invoke_without_command=True)

STOP_GRACE_S = 20.0
logging.getLogger("httpx").setLevel(logging.WARNING)


@dataclass(frozen=True)
class Service:
    name: str
    argv: list[str]

    def pid_file(self, home: Path) -> Path:
        return home / f"{self.name}.pid"

    def log_file(self, home: Path) -> Path:
        return home / "logs" / f"{self.name}.log"


def services(settings: OrchestrationSettings) -> list[Service]:
    bin_dir = Path(sys.executable).parent
    return [
        Service(
            "webserver",
            [
                str(bin_dir / "dagster-webserver"),
                "-h",
                settings.dagster_host,
                "-p",
                str(settings.dagster_port),
                "-w",
                str(WORKSPACE),
            ],
        ),
        Service("daemon", [str(bin_dir / "dagster-daemon"), "run", "-w", str(WORKSPACE)]),
    ]


def url(settings: OrchestrationSettings) -> str:
    return f"http://{settings.dagster_host}:{settings.dagster_port}"


def _alive(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"dagster" in cmdline


def running_pid(service: Service, home: Path) -> int | None:
    """The PID recorded for ``service`` when that process is still a dagster process."""
    try:
        pid = int(service.pid_file(home).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def answers(settings: OrchestrationSettings, timeout: float = 2.0) -> bool:
    try:
        return httpx.get(f"{url(settings)}/server_info", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def _port_taken(settings: OrchestrationSettings) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((settings.dagster_host, settings.dagster_port)) == 0


def start(settings: OrchestrationSettings, wait_s: float = 240.0) -> str:
    """Start whatever is not running, wait for the webserver, return its URL."""
    home = dagster_home(settings)
    env = {
        **os.environ,
        **prepare_instance(settings, home),
        "WV_STATE_DIR": str(settings.state_dir.resolve()),
        "TQDM_DISABLE": "1",
    }
    todo = [s for s in services(settings) if running_pid(s, home) is None]
    if any(s.name == "webserver" for s in todo) and _port_taken(settings):
        raise typer.BadParameter(
            f"{settings.dagster_host}:{settings.dagster_port} is taken by another program; "
            "set WV_DAGSTER_PORT to a free port"
        )
    for service in todo:
        log = service.log_file(home)
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            process = subprocess.Popen(
                service.argv, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        service.pid_file(home).write_text(f"{process.pid}\n")
    deadline = time.monotonic() + wait_s
    while not answers(settings):
        for service in services(settings):
            if running_pid(service, home) is None:
                tail = service.log_file(home).read_text(errors="replace")[-3000:]
                stop(settings)
                raise RuntimeError(f"dagster {service.name} exited during start-up; log tail:\n{tail}")
        if time.monotonic() > deadline:
            stop(settings)
            raise RuntimeError(
                f"the Dagster webserver did not answer within {wait_s:.0f} s (logs in {home}/logs)"
            )
        time.sleep(1.0)
    return url(settings)


def stop(settings: OrchestrationSettings) -> list[str]:
    """Stop the process group of each running service (TERM, then KILL after a grace period)."""
    home = dagster_home(settings)
    stopped = []
    for service in services(settings):
        pid = running_pid(service, home)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_GRACE_S
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
            stopped.append(service.name)
        service.pid_file(home).unlink(missing_ok=True)
    return stopped


@app.callback()
def ui(
    ctx: typer.Context,
    background: Annotated[bool, typer.Option("--background", help="Leave them running and return.")] = False,
    stop_: Annotated[bool, typer.Option("--stop", help="Stop a running webserver and daemon.")] = False,
) -> None:
    """Start the Dagster webserver and daemon (PostgreSQL-backed instance) and print the URL."""
    if ctx.invoked_subcommand is not None:
        return
    settings = OrchestrationSettings.startup()
    if stop_:
        stop_command()
        return
    address = start(settings)
    typer.echo(f"Dagster UI: {address}")
    if background:
        typer.echo("running in the background; stop with `wv ui --stop`")
        return
    typer.echo("press Ctrl-C to stop")
    try:
        while all(running_pid(s, dagster_home(settings)) for s in services(settings)):
            time.sleep(1.0)
        typer.echo("a Dagster process exited; stopping the other")
    except KeyboardInterrupt:
        pass
    finally:
        stop(settings)


@app.command("stop")
def stop_command() -> None:
    """Stop the webserver and daemon started by `wv ui`."""
    stopped = stop(OrchestrationSettings.startup())
    typer.echo(f"stopped {', '.join(stopped)}" if stopped else "nothing was running")


@app.command("status")
def status_command() -> None:
    """Whether the webserver and daemon run, and the URL."""
    settings = OrchestrationSettings.startup()
    home = dagster_home(settings)
    for service in services(settings):
        pid = running_pid(service, home)
        typer.echo(f"{service.name}: {'running (pid ' + str(pid) + ')' if pid else 'stopped'}")
    typer.echo(f"{url(settings)} {'answers' if answers(settings) else 'does not answer'}")
