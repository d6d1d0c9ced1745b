"""`wv edge run`: the edge service next to the cameras (mounted by `wv.cli`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Run the edge service next to the cameras.", no_args_is_help=True)


@app.callback()
def edge() -> None:
    """Run the edge service next to the cameras."""


@app.command()
def run(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="edge.yaml with facility, cameras, …")
    ] = None,
    facility: Annotated[str | None, typer.Option(help="One-camera shorthand: facility id.")] = None,
    camera: Annotated[str | None, typer.Option(help="One-camera shorthand: camera id.")] = None,
    source: Annotated[
        str | None,
        typer.Option(help="One-camera shorthand: synthetic://seed=1 | file:///clip.mp4 | rtsp://…"),
    ] = None,
    policy: Annotated[
        str | None,
        typer.Option(
            help="One-camera shorthand: latest | every (default: every for a file:// source, else latest)."
        ),
    ] = None,
    drain_timeout: Annotated[
        float, typer.Option(help="Seconds to empty the outbox at shutdown (within shutdown.timeout_s).")
    ] = 10.0,
) -> None:
    """Stream decisions from the cameras to the centre until SIGTERM (or until finite sources end).

    Exit codes: 0 stopped cleanly, 2 configuration or start-up error, 3 the watchdog found a stalled
    thread, 4 the stop overran shutdown.timeout_s (or a second signal came). The last line on
    stderr sums up frames read, processed and dropped, and the events left in the outbox."""
    from edge.backends.base import EngineError
    from edge.config import build_config, load_config, single_camera
    from edge.hotswap.manager import NoModelError
    from edge.outbox.store import OutboxError
    from edge.service import EdgeService
    from edge.settings import EdgeSettings

    settings = EdgeSettings.startup()
    shorthand = [facility, camera, source]
    if config is not None:
        if any(shorthand):
            raise typer.BadParameter("give either --config or --facility/--camera/--source, not both")
        cfg = load_config(config, settings)
    elif all(shorthand):
        cfg = single_camera(facility, camera, source, settings, policy)  # type: ignore[arg-type]
    elif any(shorthand):
        raise typer.BadParameter("the shorthand needs all of --facility, --camera and --source")
    else:
        cfg = build_config({}, settings, "defaults")  # names what is missing
    token = settings.grpc_token.get_secret_value() if settings.grpc_token else None
    service = EdgeService(
        cfg,
        grpc_token=token,
        owns_process=True,
        reload=(lambda: load_config(config, settings)) if config is not None else None,
        config_file=config,  # cameras added, removed or re-pointed there apply without a restart
    )
    try:
        service.run(drain_timeout_s=drain_timeout)
    except (OutboxError, NoModelError, EngineError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if service.output_stuck:  # nobody reads stderr: any write or flush would block the exit
        _exit_now(service.exit_code, flush=False)
    typer.echo(service.summary(), err=True)
    if service.outbox_left:
        typer.echo(
            f"{service.outbox_left} events left in the outbox; they are replayed on the next start", err=True
        )
    if service.abandoned:  # a stuck thread would hold the interpreter's exit: end the process here
        _exit_now(service.exit_code)
    raise typer.Exit(service.exit_code)


def _exit_now(code: int, flush: bool = True) -> None:
    import logging
    import os
    import sys

    if flush:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)
