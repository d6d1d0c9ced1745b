"""``wv db``: apply migrations, show their state, maintain time-series partitions, register cameras."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import psycopg
import typer

from foundation.redaction import display_url
from realtime.settings import CentreSettings
from realtime.storage import migrate
from realtime.storage.bootstrap import bootstrap
from realtime.storage.facilities import RegistrationError, list_cameras, register_camera
from realtime.storage.partitions import maintain as maintain_partitions

app = typer.Typer(help="Apply migrations, maintain partitions, register cameras.", no_args_is_help=True)
cameras_app = typer.Typer(
    help="Register and list the cameras of each facility (events of others are dead-lettered).",
    no_args_is_help=True,
)
app.add_typer(cameras_app, name="cameras")


@contextmanager
def _database_errors(settings: CentreSettings) -> Iterator[None]:
    url = display_url(settings.database_url)
    try:
        yield
    except (migrate.MigrationError, RegistrationError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        typer.echo(f"error: WV_DATABASE_URL={url}: {first}; is it running? (`wv services up`)", err=True)
        raise typer.Exit(1) from None


@app.command()
def upgrade() -> None:
    """Create the database if missing, apply pending migrations, create partitions, seed facilities."""
    settings = CentreSettings.startup()
    with _database_errors(settings):
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
    settings = CentreSettings.startup()
    with _database_errors(settings):
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
    settings = CentreSettings.startup()
    with (
        _database_errors(settings),
        psycopg.connect(settings.database_url, autocommit=True, connect_timeout=10) as conn,
    ):
        report = maintain_partitions(
            conn, retention_days=settings.retention_days, days_ahead=settings.partition_days_ahead
        )
    typer.echo(report.summary())
    for name in report.dropped:
        typer.echo(f"  dropped {name}")


@cameras_app.command("add")
def cameras_add(
    facility: Annotated[
        str, typer.Argument(help="Facility id (must exist: WV_FACILITIES + `wv db upgrade`).")
    ],
    camera: Annotated[str, typer.Argument(help="Camera id, as in the edge's edge.yaml (`cameras[].id`).")],
    source: Annotated[
        str | None, typer.Option("--source", help="Source URI (rtsp://, file://, synthetic://).")
    ] = None,
    description: Annotated[str | None, typer.Option("--description", help="Free text.")] = None,
) -> None:
    """Register a camera (again: updates the given --source/--description, keeps the rest)."""
    settings = CentreSettings.startup()
    with (
        _database_errors(settings),
        psycopg.connect(settings.database_url, autocommit=True, connect_timeout=10) as conn,
    ):
        added = register_camera(conn, facility, camera, source_uri=source, description=description)
    if added:
        state = "registered"
    else:
        state = "already registered" + (", updated" if source is not None or description is not None else "")
    typer.echo(f"camera {camera} of facility {facility}: {state}")


@cameras_app.command("list")
def cameras_list(
    facility: Annotated[str | None, typer.Option("--facility", help="Only this facility's cameras.")] = None,
) -> None:
    """Registered cameras, by facility: id, source URI, description."""
    settings = CentreSettings.startup()
    with (
        _database_errors(settings),
        psycopg.connect(settings.database_url, autocommit=True, connect_timeout=10) as conn,
    ):
        cameras = list_cameras(conn, facility)
    if not cameras:
        typer.echo("no cameras registered" + (f" for facility {facility}" if facility else ""))
    for c in cameras:
        typer.echo("  ".join([c.facility_id, c.camera_id, c.source_uri or "-", c.description]).rstrip())
