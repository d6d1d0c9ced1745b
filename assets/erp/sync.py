"""``erp_sync``: delivers a facility-day's outbox messages to the ERP and reports reconciliation.

``facility_daily_analytics`` enqueues damage claims and the discrepancy report in ``erp_outbox``
in the same transaction as its figures; this asset dispatches the partition's due messages
through the configured adapter (``WV_ERP_ADAPTER``) and records the reconciliation (pending,
sent, acknowledged, failed, parked). Credentials never reach metadata: errors are redacted by
the adapter, and only counts, keys and ERP ids are reported.

Backfill policy — its upstream's (``facility_daily_analytics.BACKFILL_POLICY``, up to
``FACILITY_DAYS_PER_RUN`` facility-days per run) so a backfill of both runs them together; the dispatch then
covers all of them in batches (one ``$batch`` for up to ``WV_ERP_BATCH_SIZE`` messages) and the
reconciliation reports the run's facility-days together. The ``erp_api`` pool caps concurrent
ERP traffic across runs independently of the database pool. Each run also re-sends deferred
(``failed``) messages of any earlier day whose backoff has expired, so a retry never waits for
someone to re-run that day.

Facility shards (``WV_SHARD_MAP``) — ``erp_outbox`` lives on each facility's shard, next to the
figures it reports: the analytics refresh enqueues the day's messages in the same transaction as
those figures, and a transactional outbox only holds that guarantee inside one database (a home
outbox would need a two-database commit, and would put every facility's ERP traffic back on the
home shard). So a run dispatches and reconciles each of its facility-days on that facility's
shard, and re-sends the expired deferrals of the shards it touches (the nightly runs touch every
shard; a shard that is down fails only its own facilities' runs). A message is still claimed
``FOR UPDATE SKIP LOCKED`` in its own database, so runs on different shards never contend.
"""

from typing import Any

import dagster as dg

from assets.common.partitions import daily_facility_partitions
from assets.common.resources import DatabaseResource
from assets.erp.outbox import (
    STATUSES,
    DispatchReport,
    Partition,
    Reconciliation,
    dispatch,
    merge,
    reconcile,
)
from assets.erp.resource import ErpResource
from assets.facility_analytics.assets import BACKFILL_POLICY, facility_days

OWNERS = ["team:analytics"]
ERP_POOL = "erp_api"
"""Concurrency pool of steps that call the ERP (keeps backfills within its API limits)."""

DELIVERED_CHECK = dg.AssetCheckSpec(
    "erp_messages_delivered",
    asset="erp_sync",
    description="No message of the facility-day is parked or waiting for a retry after the sync.",
)


def reconciliation_metadata(adapter: str, report: DispatchReport, recon: Reconciliation) -> dict[str, Any]:
    totals = recon.totals
    attention = [
        {
            "key": r["idempotency_key"],
            "kind": r["kind"],
            "status": r["status"],
            "attempts": r["attempts"],
            "error": r["last_error"],
        }
        for r in recon.attention
    ]
    return {
        "adapter": adapter,
        "dispatched": dg.MetadataValue.int(report.claimed),
        "created_in_erp": dg.MetadataValue.int(report.created),
        "updated_in_erp": dg.MetadataValue.int(report.updated),
        "confirmed_later": dg.MetadataValue.int(report.confirmed_later),
        **{status: dg.MetadataValue.int(totals[status]) for status in STATUSES},
        "reconciliation": dg.MetadataValue.md(recon.markdown()),
        "needs_attention": dg.MetadataValue.json(attention),
    }


@dg.asset(
    partitions_def=daily_facility_partitions,
    deps=["facility_daily_analytics"],
    group_name="facility_analytics",
    owners=OWNERS,
    kinds={"postgres", "sap", "salesforce"},
    tags={"domain": "erp"},
    pool=ERP_POOL,
    backfill_policy=BACKFILL_POLICY,
    check_specs=[DELIVERED_CHECK],
    description=(
        "Pushes the facility-day's damage claims (one per damaged package) and inventory discrepancy report "
        "from the transactional outbox `erp_outbox` to the ERP (WV_ERP_ADAPTER: files under .local/erp, SAP "
        "OData with CSRF and $batch, or Salesforce Case upserts by external id). Idempotency keys make "
        "re-sends update, never duplicate; 429/503 back off honouring Retry-After; refused messages are "
        "parked with the ERP's error. Metadata: the reconciliation report (sent, acknowledged, failed, "
        "parked)."
    ),
)
def erp_sync(
    context: dg.AssetExecutionContext, database: DatabaseResource, erp: ErpResource
) -> dg.MaterializeResult:
    scope = facility_days(context)
    shards = database.shards()
    on_shard: dict[str, list[Partition]] = {}
    for facility, day in scope:
        on_shard.setdefault(shards.shard_of(facility), []).append((facility, day))
    reports, retries, recons = [], [], []
    with erp.open() as adapter:
        for shard, partitions in on_shard.items():
            with database.connect(autocommit=True, shard=shard) as conn:
                reports.append(dispatch(conn, adapter, erp.policy(), partitions=partitions))
                # Deferred deliveries of any earlier day whose backoff has expired go out with this run.
                retries.append(dispatch(conn, adapter, erp.policy(), statuses=("failed",)))
                recons.append(reconcile(conn, partitions))
        name = adapter.name
    report, retried, recon = DispatchReport.total(reports), DispatchReport.total(retries), merge(recons)
    for error in report.errors[:20]:
        context.log.warning("ERP %s: %s", name, error)
    totals = recon.totals
    context.log.info(
        "%s via %s: %s",
        ", ".join(f"{f} {d}" for f, d in scope),
        name,
        ", ".join(f"{totals[s]} {s}" for s in STATUSES if totals[s]) or "nothing to send",
    )
    check = dg.AssetCheckResult(
        check_name=DELIVERED_CHECK.name,
        passed=totals["parked"] == 0 and totals["failed"] == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"parked": totals["parked"], "failed": totals["failed"]},
    )
    metadata = reconciliation_metadata(name, report, recon)
    metadata["earlier_retries_delivered"] = dg.MetadataValue.int(retried.acknowledged + retried.sent)
    metadata["earlier_retries_deferred_again"] = dg.MetadataValue.int(retried.deferred + retried.parked)
    return dg.MaterializeResult(metadata=metadata, check_results=[check])
