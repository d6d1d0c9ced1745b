"""``wv analytics``: on-call backfills of facility analytics through the running Dagster webserver.

- ``wv analytics backfill --facility FAC-007 --from 2026-11-01 --to 2026-11-07``: one facility, a range;
- ``wv analytics backfill --from 2026-11-20 --to 2026-11-20``: every facility, one day;
- ``wv analytics retry <backfill id>``: a new backfill of only the partitions that failed.

Each prints the backfill id and its page in the UI; the daemon runs it under the run queue and
the ``analytics_db`` / ``erp_api`` pools.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

import typer

from orchestration.backfills import (
    DEFAULT_ASSETS,
    LAUNCH_BACKFILL,
    RETRY_FAILED,
    BackfillError,
    backfill_id,
    launch_variables,
    partition_keys,
    post,
    retry_variables,
)
from orchestration.settings import OrchestrationSettings

app = typer.Typer(help="Backfill facility analytics and ERP sync.", no_args_is_help=True)


def _url(settings: OrchestrationSettings, url: str | None) -> str:
    return url or f"http://{settings.dagster_host}:{settings.dagster_port}"


def _report(url: str, new_id: str, what: str) -> None:
    typer.echo(f"{what}: backfill {new_id}")
    typer.echo(f"follow it at {url}/runs/b/{new_id}?tab=partitions")


@app.command()
def backfill(
    first: Annotated[str, typer.Option("--from", help="First local day, YYYY-MM-DD.")],
    last: Annotated[
        str | None, typer.Option("--to", help="Last local day (inclusive); default: --from.")
    ] = None,
    facility: Annotated[
        list[str] | None, typer.Option("--facility", "-f", help="Facility id (repeatable); default: all.")
    ] = None,
    asset: Annotated[
        list[str] | None,
        typer.Option(
            "--asset", help="Asset to backfill (repeatable); default: facility_daily_analytics, erp_sync."
        ),
    ] = None,
    url: Annotated[
        str | None, typer.Option(help="Dagster webserver; default: WV_DAGSTER_HOST:WV_DAGSTER_PORT.")
    ] = None,
) -> None:
    """Launch an asset backfill of facility-days (facilities × local days)."""
    settings = OrchestrationSettings.startup()
    try:
        start = date.fromisoformat(first)
        end = date.fromisoformat(last) if last else start
    except ValueError as exc:
        raise typer.BadParameter(f"dates must be YYYY-MM-DD ({exc})") from None
    facilities = facility or list(settings.facilities)
    unknown = sorted(set(facilities) - set(settings.facilities))
    if unknown:
        raise typer.BadParameter(
            f"not configured in WV_FACILITIES: {', '.join(unknown)}", param_hint="--facility"
        )
    try:
        keys = partition_keys(facilities, start, end)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    base = _url(settings, url)
    title = f"{', '.join(facilities) if facility else 'all facilities'} {start}..{end}"
    try:
        data = post(base, LAUNCH_BACKFILL, launch_variables(keys, asset or DEFAULT_ASSETS, title))
        new_id = backfill_id(data, "launchPartitionBackfill")
    except BackfillError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    _report(base, new_id, f"{len(keys)} facility-days ({title})")


@app.command()
def retry(
    backfill: Annotated[str, typer.Argument(help="Id of the backfill whose failed partitions to re-run.")],
    url: Annotated[
        str | None, typer.Option(help="Dagster webserver; default: WV_DAGSTER_HOST:WV_DAGSTER_PORT.")
    ] = None,
) -> None:
    """Re-run only the failed (and never-started) partitions of a finished backfill."""
    base = _url(OrchestrationSettings.startup(), url)
    try:
        new_id = backfill_id(
            post(base, RETRY_FAILED, retry_variables(backfill)), "reexecutePartitionBackfill"
        )
    except BackfillError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    _report(base, new_id, f"failed partitions of {backfill}")
