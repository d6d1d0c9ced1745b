"""``wv services``: start, stop and check the backing services."""

from __future__ import annotations

from typing import Annotated

import typer

from wv.services.base import ServiceError
from wv.services.label_studio import LabelStudioService
from wv.services.manager import ServiceManager, services_for
from wv.settings import PlatformSettings

app = typer.Typer(help="Start, stop and check local PostgreSQL, Redis and Kafka.", no_args_is_help=True)

Names = Annotated[
    list[str] | None, typer.Argument(help="postgres, redis, kafka, label-studio (default: all).")
]


def _manager() -> ServiceManager:
    """The manager of this checkout's services; every tier's settings are checked first."""
    settings = PlatformSettings.startup()
    # A Label Studio started earlier stays managed (status, down, its URL) after labeling is turned off.
    started = (settings.state_dir / "services" / LabelStudioService.name / "service.json").exists()
    labeling = settings.services_labeling or started
    return ServiceManager(settings.state_dir, services=services_for(settings.services_ha, labeling))


@app.command()
def up(
    names: Names = None,
    private: Annotated[
        bool, typer.Option("--private", help="Start local instances even when the default URLs answer.")
    ] = False,
) -> None:
    """Use each configured service when it answers, else start a local one and record its URL."""
    try:
        states = _manager().up(names, private=private)
    except ServiceError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    for state in states:
        typer.echo(state.line())


@app.command()
def down(
    names: Names = None,
    purge: Annotated[bool, typer.Option("--purge", help="Also delete their data and logs.")] = False,
) -> None:
    """Stop the local instances `up` started (configured services are never touched)."""
    try:
        stopped = _manager().down(names, purge=purge)
    except ServiceError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing to stop")


@app.command()
def status(names: Names = None) -> None:
    """One line per service: URL, who started it, health. Exit code 1 when any is unhealthy."""
    try:
        states = _manager().status(names)
    except ServiceError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    for state in states:
        typer.echo(state.line())
    if not all(s.healthy for s in states):
        raise typer.Exit(1)
