"""``wv db``: apply migrations, show their state, maintain time-series partitions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import typer

from realtime.storage import migrate
from realtime.storage.bootstrap import bootstrap
from realtime.storage.partitions import maintain as maintain_partitions
from wv.services.manager import display_url
from wv.settings import get_settings

app = typer.Typer(help="Apply migrations and maintain partitions.", no_args_is_help=True)


@contextmanager
def _database_errors() -> Iterator[None]:
    url = display_url(get_settings().database_url)
    try:
        yield
    except migrate.MigrationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        typer.echo(f"error: WV_DATABASE_URL={url}: {first}; is it running? (`wv services up`)", err=True)
        raise typer.Exit(1) from None


@app.command()
def upgrade() -> None:
    """Create the database if missing, apply pending migrations, create partitions, seed facilities."""
    settings = get_settings()
    with _database_errors():
        report = bootstrap(
            settings.database_url,
            facilities=settings.facilities,
            retention_days=settings.retention_days,
            days_ahead=settings.partition_days_ahead,
            timezone=settings.facility_timezone,
        )
    if report.migrations:
        typer.echo("applied: " + ", ".join(report.migrations))
    else:
        typer.echo("schema up to date: nothing to apply")
    typer.echo(f"partitions: {report.maintenance.summary()}")
    typer.echo(f"facilities: {report.facilities_added} added ({len(settings.facilities)} configured)")


@app.command()
def status() -> None:
    """Applied and pending migrations, and the flavour (postgres or timescale) of the schema."""
    settings = get_settings()
    with _database_errors():
        state = migrate.status(settings.database_url)
    typer.echo(f"database: {display_url(settings.database_url)} ({state.flavour})")
    for done in state.applied:
        variant = f".{done.variant}" if done.variant else ""
        typer.echo(f"  applied  {done.version:04d}_{done.name}{variant}  sha256:{done.checksum[:12]}")
    for todo in state.pending:
        typer.echo(f"  pending  {todo.label}")
    if not state.pending:
        typer.echo("up to date")


@app.command()
def maintain() -> None:
    """Create daily partitions ahead, drop those past WV_RETENTION_DAYS (run daily; idempotent)."""
    settings = get_settings()
    with (
        _database_errors(),
        psycopg.connect(settings.database_url, autocommit=True, connect_timeout=10) as conn,
    ):
        report = maintain_partitions(
            conn, retention_days=settings.retention_days, days_ahead=settings.partition_days_ahead
        )
    typer.echo(report.summary())
    for name in report.dropped:
        typer.echo(f"  dropped {name}")
