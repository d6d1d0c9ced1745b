"""``wv erp``: the ERP outbox for on-call — reconciliation, an immediate dispatch, requeue of parked messages.

- ``wv erp status [--facility F] [--date D]``: messages by kind and status, and the ones that need a person;
- ``wv erp dispatch [--facility F --date D]``: deliver what is due now (what ``erp_sync`` does nightly);
- ``wv erp requeue [--key K ...] [--facility F] [--date D] [--failed]``: parked (and optionally
  failed) messages back to pending, after the cause was fixed in the ERP or the data.

With facility shards (``WV_SHARD_MAP``) each facility's messages live on its shard: a command
for one facility acts on that shard, any other on every shard (the status report merged).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

import psycopg
import typer

from assets.erp.adapters import build_adapter
from assets.erp.base import ErpConfigError
from assets.erp.outbox import DispatchPolicy, DispatchReport, Partition, dispatch, merge, reconcile, requeue
from orchestration.settings import OrchestrationSettings
from realtime.storage.shards import ShardMap

app = typer.Typer(help="Inspect and operate the ERP outbox.", no_args_is_help=True)

FacilityOption = Annotated[str | None, typer.Option("--facility", "-f", help="Only this facility.")]
DateOption = Annotated[str | None, typer.Option("--date", "-d", help="Only this business date, YYYY-MM-DD.")]


def _scope(settings: OrchestrationSettings, facility: str | None, day: str | None) -> list[Partition] | None:
    """(facility, date) pairs to act on; None means every message."""
    if day is None and facility is None:
        return None
    if day is None:
        raise typer.BadParameter("--facility needs --date (one facility-day at a time)", param_hint="--date")
    try:
        business_date = date.fromisoformat(day)
    except ValueError:
        raise typer.BadParameter(f"{day!r} is not YYYY-MM-DD", param_hint="--date") from None
    facilities = [facility] if facility else list(settings.facilities)
    return [(f, business_date) for f in facilities]


def _shard_urls(settings: OrchestrationSettings, facility: str | None) -> list[str]:
    """The databases holding the outbox rows in scope: the facility's shard, or every shard."""
    shards = ShardMap.from_settings(settings)
    return [shards.url_of(facility)] if facility else list(shards.urls.values())


def _connect(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True, connect_timeout=10)


@app.command()
def status(facility: FacilityOption = None, day: DateOption = None) -> None:
    """The reconciliation report: pending, sent, acknowledged, failed and parked messages."""
    settings = OrchestrationSettings.startup()
    scope = _scope(settings, facility, day)
    reports = []
    for url in _shard_urls(settings, facility):
        with _connect(url) as conn:
            reports.append(reconcile(conn, scope))
    recon = merge(reports)
    typer.echo(recon.markdown())
    for row in recon.attention:
        typer.echo(
            f"{row['status']:8} {row['idempotency_key']} {row['kind']} {row['facility_id']} "
            f"{row['business_date']} tries={row['attempts']}: {row['last_error']}"
        )


@app.command(name="dispatch")
def dispatch_now(facility: FacilityOption = None, day: DateOption = None) -> None:
    """Deliver the due messages now through WV_ERP_ADAPTER."""
    settings = OrchestrationSettings.startup()
    try:
        adapter = build_adapter(settings)
    except ErpConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    scope, reports = _scope(settings, facility, day), []
    try:
        for url in _shard_urls(settings, facility):
            with _connect(url) as conn:
                reports.append(
                    dispatch(conn, adapter, DispatchPolicy.from_settings(settings), partitions=scope)
                )
    except ErpConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        adapter.close()
    report = DispatchReport.total(reports)
    typer.echo(
        f"{adapter.name}: {report.claimed} dispatched, {report.acknowledged} acknowledged, {report.sent} sent, "
        f"{report.deferred} deferred, {report.parked} parked, {report.confirmed_later} confirmed since"
    )
    for error in report.errors:
        typer.echo(f"  {error}")


@app.command(name="requeue")
def requeue_parked(
    key: Annotated[
        list[str] | None, typer.Option("--key", "-k", help="Only this idempotency key (repeatable).")
    ] = None,
    facility: FacilityOption = None,
    day: DateOption = None,
    failed: Annotated[
        bool, typer.Option("--failed", help="Also requeue failed messages waiting for backoff.")
    ] = False,
) -> None:
    """Put parked messages back in the queue (their attempts reset) for the next dispatch."""
    statuses = ("parked", "failed") if failed else ("parked",)
    settings = OrchestrationSettings.startup()
    scope, n = _scope(settings, facility, day), 0
    for url in _shard_urls(settings, facility):
        with _connect(url) as conn:
            n += requeue(conn, statuses=statuses, partitions=scope, keys=key)
    typer.echo(f"{n} message(s) back to pending; run `wv erp dispatch` or wait for the nightly erp_sync")
