"""``facility_daily_analytics``: the per-facility morning numbers, one facility-day per partition.

Computed in SQL by :func:`assets.facility_analytics.sql.refresh_facility_day` over the facility's local
day and written to ``facility_daily_analytics`` / ``facility_zone_daily_analytics``; re-running
a partition replaces its rows. The same transaction enqueues the day's ERP messages in
``erp_outbox`` for ``erp_sync``.

Backfill policy — ``BackfillPolicy.multi_run(max_partitions_per_run=FACILITY_DAYS_PER_RUN)``,
100 facility-days per run at most. Dagster splits a date × facility backfill into ranges along the
dimension with more keys, one range per key of the other, and chunks each range: a network
backfill shorter than the facility count runs one day of every facility per run (47 × 30 days:
30 runs), a longer one a facility's days in chunks of 100 (47 × 365: 188 runs), one facility
its days in chunks of 100. A run costs a process start and a code-location import (seconds,
a pod on Kubernetes) while a facility-day is ≈ 0.35 s of SQL at the reference volume
(docs/benchmarks.md), so one partition per run would make a 47 × 30-day backfill 1,410 runs
and 7 per run 210, mostly start-up; measured with ``python -m bench.dagster_partitions``. Each
facility-day is still its own transaction (a failure keeps the ones before it, and a re-run
replaces), a failed run re-runs at most 100 idempotent facility-days (≈ 35 s of SQL at the
reference volume), and the nightly schedule runs single facility-days, whose materializations
carry the full figures and chart (a range run reports one table row per facility-day instead).
How many hit the database at once is bounded by the ``analytics_db`` pool (steps) and the
backfill run limit in ``dagster.yaml`` (runs), so a large backfill queues instead of starving
ingest and the nightly jobs.

Great Expectations is imported when a check first runs, not with the module: it is most of the
code location's import time, which every code server and every run worker pays.
"""

import io
from contextlib import ExitStack
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import psycopg

from assets.common.partitions import daily_facility_partitions
from assets.common.resources import DatabaseResource
from assets.common.settings import PipelineSettings
from assets.facility_analytics.sql import RefreshResult, refresh_facility_day
from quality.charts import markdown_image
from quality.validate import validate

OWNERS = ["team:analytics"]
ANALYTICS_POOL = "analytics_db"
"""Concurrency pool of the steps that run heavy SQL on the application database."""
FACILITY_DAYS_PER_RUN = 100
"""Most facility-days one backfill run computes (see the module's docstring)."""
BACKFILL_POLICY = dg.BackfillPolicy.multi_run(max_partitions_per_run=FACILITY_DAYS_PER_RUN)
FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=48), warn_window=timedelta(hours=34))
"""Due a few hours after the facility's local midnight; UTC+14 to UTC-12 spread that over a day."""

COUNT_COLUMNS = (
    "decisions", "packages_seen", "expected_packages", "damaged_packages", "misplaced_packages",
    "anomalies_total", "fallback_decisions", "unassessed_decisions", "discrepancy_total",
)  # fmt: skip
RATE_COLUMNS = ("damage_rate", "misplacement_rate", "fallback_rate")
LATENCY_COLUMNS = ("latency_p50_ms", "latency_p99_ms")

THROUGHPUT_CHECK = dg.AssetCheckSpec(
    "throughput_matches_expected",
    asset="facility_daily_analytics",
    description=(
        "Packages seen are within WV_ANALYTICS_THROUGHPUT_TOLERANCE (±50 %) of the facility's "
        "`expected_daily_packages` (skipped when no expectation is configured)."
    ),
)
RANGES_CHECK = dg.AssetCheckSpec(
    "values_in_range",
    asset="facility_daily_analytics",
    description=(
        "GX suite `facility_daily_analytics` (counts ≥ 0, rates in [0, 1], latencies ≥ 0, one row per key) "
        "plus consistency: p50 ≤ p99, hourly throughput sums to the decisions, damaged/misplaced ≤ seen."
    ),
)
COMPLETENESS_CHECK = dg.AssetCheckSpec(
    "day_complete",
    asset="facility_daily_analytics",
    description="The local day had ended when it was computed and every decision has its quality assessment.",
)


def _label(row: dict[str, Any]) -> str:
    return f"{row['facility_id']} {row['day']}"


def throughput_check(rows: list[dict[str, Any]], tolerance: float) -> dg.AssetCheckResult:
    """Packages seen within ``tolerance`` of the expected volume, for every facility-day that has one."""
    deviations = {
        _label(r): round((r["packages_seen"] - r["expected_packages"]) / r["expected_packages"], 4)
        for r in rows
        if r["expected_packages"]
    }
    outside = {k: v for k, v in deviations.items() if abs(v) > tolerance}
    return dg.AssetCheckResult(
        check_name=THROUGHPUT_CHECK.name,
        passed=not outside,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "packages_seen": sum(r["packages_seen"] for r in rows),
            "expected_packages": sum(r["expected_packages"] for r in rows),
            "tolerance": tolerance,
            "deviations": dg.MetadataValue.json(deviations),
            "outside_tolerance": dg.MetadataValue.json(outside),
            "without_expectation": dg.MetadataValue.json(
                [_label(r) for r in rows if not r["expected_packages"]]
            ),
        },
    )


def consistency_problems(row: dict[str, Any]) -> list[str]:
    """Relations between the figures that no single-column range can express."""
    problems = []
    if sum(row["throughput_by_hour"]) != row["decisions"]:
        problems.append(
            f"hourly throughput sums to {sum(row['throughput_by_hour'])}, decisions {row['decisions']}"
        )
    p50, p99 = row["latency_p50_ms"], row["latency_p99_ms"]
    if p50 is not None and p99 is not None and p50 > p99:
        problems.append(f"latency p50 {p50:.1f} ms > p99 {p99:.1f} ms")
    for name in ("damaged_packages", "misplaced_packages"):
        if row[name] > row["packages_seen"]:
            problems.append(f"{name} {row[name]} > packages_seen {row['packages_seen']}")
    if row["packages_seen"] > row["decisions"]:
        problems.append("more packages than decisions")
    return [f"{_label(row)}: {p}" for p in problems]


def ranges_check(rows: list[dict[str, Any]], state_dir: Path) -> dg.AssetCheckResult:
    """GX ``analytics_suite`` over the rows, plus the cross-column consistency rules."""
    from quality.expectations import analytics_suite  # Great Expectations: seconds to import

    columns = ("facility_id", "day", *COUNT_COLUMNS, *RATE_COLUMNS, *LATENCY_COLUMNS)
    outcome = validate(
        pd.DataFrame([{k: r[k] for k in columns} for r in rows]),
        "facility_daily_analytics",
        analytics_suite(COUNT_COLUMNS, RATE_COLUMNS, LATENCY_COLUMNS, ("facility_id", "day")),
        state_dir,
        data_docs=False,
    )
    problems = [p for r in rows for p in consistency_problems(r)]
    return dg.AssetCheckResult(
        check_name=RANGES_CHECK.name,
        passed=outcome.success and not problems,
        metadata={
            "failed_expectations": dg.MetadataValue.json(outcome.failures_table()),
            "consistency_problems": dg.MetadataValue.json(problems),
        },
    )


def completeness_check(rows: list[dict[str, Any]]) -> dg.AssetCheckResult:
    """Each local day had ended when computed, and each decision has its quality assessment."""
    unfinished = [_label(r) for r in rows if r["window_end"] > r["computed_at"]]
    unassessed = {_label(r): r["unassessed_decisions"] for r in rows if r["unassessed_decisions"]}
    return dg.AssetCheckResult(
        check_name=COMPLETENESS_CHECK.name,
        passed=not unfinished and not unassessed,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "days_not_over": dg.MetadataValue.json(unfinished),
            "unassessed_decisions": dg.MetadataValue.json(unassessed),
        },
    )


def throughput_chart(title: str, hours: list[int]) -> bytes:
    """Decisions per local hour as a small bar chart."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2.2))
    ax.bar(range(24), hours, color="#30638e")
    ax.set_xticks(range(0, 24, 3))
    ax.set_xlabel("local hour")
    ax.set_ylabel("decisions")
    ax.set_title(title, fontsize=9)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=72, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _zones_table(zones: list[dict[str, Any]]) -> str:
    lines = ["| zone | expected | seen | discrepancy |", "|---|---:|---:|---:|"]
    lines += [
        f"| {z['zone_id']} | {z['expected_packages']} | {z['seen_packages']} | {z['discrepancy']:+d} |"
        for z in zones
    ]
    return "\n".join(lines)


def _anomalies_table(anomalies: dict[str, dict[str, int]]) -> str:
    lines = ["| kind | info | warning | critical |", "|---|---:|---:|---:|"]
    lines += [
        f"| {kind} | {s.get('info', 0)} | {s.get('warning', 0)} | {s.get('critical', 0)} |"
        for kind, s in sorted(anomalies.items())
    ]
    return "\n".join(lines)


def metadata_for(result: RefreshResult) -> dict[str, Any]:
    row = result.row

    def ms(value: float | None) -> dg.MetadataValue:
        return dg.MetadataValue.float(round(value, 2)) if value is not None else dg.MetadataValue.null()

    title = f"{row['facility_id']} {row['day']} ({row['timezone']}): {row['decisions']} decisions"
    return {
        "facility": row["facility_id"],
        "date": row["day"].isoformat(),
        "timezone": row["timezone"],
        "decisions": dg.MetadataValue.int(row["decisions"]),
        "packages_seen": dg.MetadataValue.int(row["packages_seen"]),
        "expected_packages": dg.MetadataValue.int(row["expected_packages"]),
        "damage_rate": dg.MetadataValue.float(round(row["damage_rate"], 5)),
        "misplacement_rate": dg.MetadataValue.float(round(row["misplacement_rate"], 5)),
        "fallback_rate": dg.MetadataValue.float(round(row["fallback_rate"], 5)),
        "latency_p50_ms": ms(row["latency_p50_ms"]),
        "latency_p99_ms": ms(row["latency_p99_ms"]),
        "anomalies_total": dg.MetadataValue.int(row["anomalies_total"]),
        "anomalies": dg.MetadataValue.md(_anomalies_table(row["anomalies"])),
        "inventory_discrepancies": dg.MetadataValue.md(_zones_table(result.zones)),
        "discrepancy_total": dg.MetadataValue.int(row["discrepancy_total"]),
        "throughput_by_hour": dg.MetadataValue.json(row["throughput_by_hour"]),
        "throughput_chart": dg.MetadataValue.md(
            markdown_image(throughput_chart(title, row["throughput_by_hour"]), title)
        ),
        "hourly_source": row["source"],
        "erp_claims_enqueued": dg.MetadataValue.int(result.claims_enqueued),
        "erp_reports_enqueued": dg.MetadataValue.int(result.reports_enqueued),
        "erp_withdrawn": dg.MetadataValue.int(result.outbox_withdrawn),
    }


def range_metadata(results: list[RefreshResult]) -> dict[str, Any]:
    """Several facility-days in one run (a backfill range): one table row each, plus totals."""
    lines = [
        "| facility | day | decisions | packages | damage | misplaced | p99 ms | anomalies | discrepancy |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in (result.row for result in results):
        p99 = f"{r['latency_p99_ms']:.1f}" if r["latency_p99_ms"] is not None else "–"
        lines.append(
            f"| {r['facility_id']} | {r['day']} | {r['decisions']:,} | {r['packages_seen']:,} | "
            f"{r['damage_rate']:.2%} | {r['misplacement_rate']:.2%} | {p99} | {r['anomalies_total']} | "
            f"{r['discrepancy_total']} |"
        )
    return {
        "facility_days": dg.MetadataValue.int(len(results)),
        "decisions": dg.MetadataValue.int(sum(r.row["decisions"] for r in results)),
        "packages_seen": dg.MetadataValue.int(sum(r.row["packages_seen"] for r in results)),
        "per_facility_day": dg.MetadataValue.md("\n".join(lines)),
        "erp_claims_enqueued": dg.MetadataValue.int(sum(r.claims_enqueued for r in results)),
        "erp_reports_enqueued": dg.MetadataValue.int(sum(r.reports_enqueued for r in results)),
        "erp_withdrawn": dg.MetadataValue.int(sum(r.outbox_withdrawn for r in results)),
    }


def facility_days(context: dg.AssetExecutionContext) -> list[tuple[str, date]]:
    """(facility, local day) of every date × facility partition of the run (one, or a backfill range)."""
    pairs = []
    for key in context.partition_keys:
        multi = daily_facility_partitions.get_partition_key_from_str(str(key))
        dims = multi.keys_by_dimension
        pairs.append((dims["facility"], date.fromisoformat(dims["date"])))
    return pairs


@dg.asset(
    partitions_def=daily_facility_partitions,
    deps=["package_detections"],
    group_name="facility_analytics",
    owners=OWNERS,
    kinds={"postgres", "sql"},
    tags={"domain": "analytics"},
    pool=ANALYTICS_POOL,
    backfill_policy=BACKFILL_POLICY,
    freshness_policy=FRESHNESS,
    check_specs=[THROUGHPUT_CHECK, RANGES_CHECK, COMPLETENESS_CHECK],
    description=(
        "Per facility and local day (facilities.timezone): packages seen, throughput by hour, damage and "
        "misplacement rates, anomalies by kind and severity, p50/p99 end-to-end latency, fallback rate and "
        "inventory discrepancies per zone (zones.expected_daily_packages vs packages seen). Computed in SQL "
        "over partition-pruned time ranges (hourly throughput from the TimescaleDB continuous aggregate when "
        "present); a re-run replaces the partition's rows in `facility_daily_analytics` and "
        "`facility_zone_daily_analytics` and, in the same transaction, refreshes its pending ERP messages "
        "(damage claims, discrepancy report) in `erp_outbox`."
    ),
)
def facility_daily_analytics(
    context: dg.AssetExecutionContext,
    database: DatabaseResource,
    settings: dg.ResourceParam[PipelineSettings],
) -> dg.MaterializeResult:
    results = []
    shards = database.shards()
    with ExitStack() as stack:
        conns: dict[str, psycopg.Connection] = {}  # one per facility shard the run touches
        for facility, day in facility_days(context):
            shard = shards.shard_of(facility)
            if shard not in conns:
                conns[shard] = stack.enter_context(database.connect(shard=shard))
            result = refresh_facility_day(conns[shard], facility, day)  # own transaction: done stays done
            row = result.row
            context.log.info(
                "%s %s: %d decisions, %d packages, damage %.4f, %d ERP claims enqueued",
                facility,
                day,
                row["decisions"],
                row["packages_seen"],
                row["damage_rate"],
                result.claims_enqueued,
            )
            results.append(result)
    rows = [r.row for r in results]
    checks = [
        throughput_check(rows, settings.analytics_throughput_tolerance),
        ranges_check(rows, settings.state_dir),
        completeness_check(rows),
    ]
    metadata = metadata_for(results[0]) if len(results) == 1 else range_metadata(results)
    return dg.MaterializeResult(metadata=metadata, check_results=checks)
