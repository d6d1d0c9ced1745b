"""``wv db``: apply migrations, show their state, maintain time-series partitions, register cameras.

Every command acts on each facility shard (``WV_SHARD_MAP``; one database when unset): the
schema and partitions on all of them, the camera registry on the home shard then mirrored."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import psycopg
import typer

from foundation.redaction import display_url
from realtime.settings import CentreSettings
from realtime.storage import migrate
from realtime.storage.bootstrap import bootstrap_shards
from realtime.storage.facilities import (
    RegistrationError,
    list_cameras,
    mirror_catalogue,
    register_camera,
    switch_off_camera,
)
from realtime.storage.partitions import maintain as maintain_partitions
from realtime.storage.shards import ShardMap

app = typer.Typer(help="Apply migrations, maintain partitions, register cameras.", no_args_is_help=True)
cameras_app = typer.Typer(
    help="Register and list the cameras of each facility (events of others are dead-lettered).",
    no_args_is_help=True,
)
app.add_typer(cameras_app, name="cameras")


@contextmanager
def _database_errors(settings: CentreSettings, url: str | None = None) -> Iterator[None]:
    """One clear line instead of a traceback; ``url``: the shard being worked on (default: home)."""
    where = "WV_DATABASE_URL" if url in (None, settings.database_url) else "WV_SHARD_MAP shard"
    shown = display_url(url or settings.database_url)
    try:
        yield
    except (migrate.MigrationError, RegistrationError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        typer.echo(f"error: {where} {shown}: {first}; is it running? (`wv services up`)", err=True)
        raise typer.Exit(1) from None


@app.command()
def upgrade() -> None:
    """Create the databases if missing, apply pending migrations, create partitions, seed facilities
    (on every shard; the other shards mirror the home shard's facilities, zones and cameras)."""
    settings = CentreSettings.startup()
    shards = ShardMap.from_settings(settings)
    with _database_errors(settings):
        reports = bootstrap_shards(
            shards,
            facilities=settings.facilities,
            retention_days=settings.retention_days,
            days_ahead=settings.partition_days_ahead,
            timezone=settings.facility_timezone,
        )
    for name, report in reports.items():
        prefix = f"shard {name}: " if shards.sharded else ""
        if report.migrations:
            typer.echo(prefix + "applied: " + ", ".join(report.migrations))
        else:
            typer.echo(prefix + "schema up to date: nothing to apply")
        typer.echo(f"{prefix}partitions: {report.maintenance.summary()}")
        if name == shards.names[0]:
            typer.echo(
                f"{prefix}facilities: {report.facilities_added} added ({len(settings.facilities)} configured)"
            )
        else:
            typer.echo(f"{prefix}catalogue mirrored from home: {report.catalogue_mirrored} rows changed")


@app.command()
def status() -> None:
    """Applied and pending migrations, and the flavour (postgres or timescale), of every shard's schema."""
    settings = CentreSettings.startup()
    shards = ShardMap.from_settings(settings)
    for name, url in shards.urls.items():
        with _database_errors(settings, url):
            state = migrate.status(url)
        shard = f"shard {name}, " if shards.sharded else ""
        typer.echo(f"database: {shard}{display_url(url)} ({state.flavour})")
        for done in state.applied:
            variant = f".{done.variant}" if done.variant else ""
            typer.echo(f"  applied  {done.version:04d}_{done.name}{variant}  sha256:{done.checksum[:12]}")
        for todo in state.pending:
            typer.echo(f"  pending  {todo.label}")
        if not state.pending:
            typer.echo("up to date")


@app.command()
def maintain() -> None:
    """Create daily partitions ahead, drop those past WV_RETENTION_DAYS, on every shard (run daily)."""
    settings = CentreSettings.startup()
    shards = ShardMap.from_settings(settings)
    for name, url in shards.urls.items():
        with (
            _database_errors(settings, url),
            psycopg.connect(url, autocommit=True, connect_timeout=10) as conn,
        ):
            report = maintain_partitions(
                conn, retention_days=settings.retention_days, days_ahead=settings.partition_days_ahead
            )
        typer.echo((f"shard {name}: " if shards.sharded else "") + report.summary())
        for dropped in report.dropped:
            typer.echo(f"  dropped {dropped}")


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
    """Register a camera (again: updates the given --source/--description, keeps the rest, and
    switches a disabled camera on). Edges with `cameras_from: registry` start or re-point it live."""
    settings = CentreSettings.startup()
    with (
        _database_errors(settings),
        psycopg.connect(settings.database_url, autocommit=True, connect_timeout=10) as conn,
    ):
        added = register_camera(conn, facility, camera, source_uri=source, description=description)
        _mirror(settings, conn)
    if added:
        state = "registered"
    else:
        state = "already registered" + (", updated" if source is not None or description is not None else "")
    typer.echo(f"camera {camera} of facility {facility}: {state}")


@cameras_app.command("disable")
def cameras_disable(
    facility: Annotated[str, typer.Argument(help="Facility id.")],
    camera: Annotated[str, typer.Argument(help="Camera id.")],
) -> None:
    """Switch a camera off: edges with `cameras_from: registry` stop reading it (its last decisions
    are still accepted: it stays registered); `add` switches it on again."""
    settings = CentreSettings.startup()
    with (
        _database_errors(settings),
        psycopg.connect(settings.database_url, autocommit=True, connect_timeout=10) as conn,
    ):
        was_on = switch_off_camera(conn, facility, camera)
        _mirror(settings, conn)
    typer.echo(f"camera {camera} of facility {facility}: " + ("disabled" if was_on else "already disabled"))


@cameras_app.command("list")
def cameras_list(
    facility: Annotated[str | None, typer.Option("--facility", help="Only this facility's cameras.")] = None,
) -> None:
    """Registered cameras, by facility: id, source URI, on/off, description."""
    settings = CentreSettings.startup()
    with (
        _database_errors(settings),
        psycopg.connect(settings.database_url, autocommit=True, connect_timeout=10) as conn,
    ):
        cameras = list_cameras(conn, facility)
    if not cameras:
        typer.echo("no cameras registered" + (f" for facility {facility}" if facility else ""))
    for c in cameras:
        state = "on" if c.enabled else "off"
        typer.echo(
            "  ".join([c.facility_id, c.camera_id, c.source_uri or "-", state, c.description]).rstrip()
        )


def _mirror(settings: CentreSettings, home: psycopg.Connection) -> None:
    """Copy the home shard's catalogue onto every other shard (a shard that is down gets it at
    its next ``wv db upgrade``; the validator reads the home shard, so its events are accepted)."""
    shards = ShardMap.from_settings(settings)
    for name in shards.names[1:]:
        try:
            with psycopg.connect(shards.urls[name], autocommit=True, connect_timeout=10) as conn:
                mirror_catalogue(home, conn)
        except psycopg.OperationalError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            typer.echo(
                f"warning: shard {name} not updated ({first}); run `wv db upgrade` when it is back", err=True
            )
