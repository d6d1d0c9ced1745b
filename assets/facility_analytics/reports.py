"""``network_weekly_report``: every facility's week from the daily rollups, as a table, a chart and files.

It reads only ``facility_daily_analytics`` (never the raw events), so a week costs milliseconds
of SQL whatever the network's volume. Rates are recomputed from the summed counts (not averaged
across days); p50 is the decision-weighted mean of the daily medians and p99 the worst day's p99,
both labelled as such because percentiles do not add up.

Backfill policy — ``BackfillPolicy.multi_run(max_partitions_per_run=1)``: one week per run, so
each week's table and chart stay in that week's materialization and file; a report is cheap, so
run start-up is the only cost. It shares the ``analytics_db`` pool with the daily rollups.
"""

import base64
import html
import io
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from assets.common.partitions import week_start, weekly_partitions
from assets.common.resources import DatabaseResource
from assets.common.settings import PipelineSettings
from assets.facility_analytics.assets import ANALYTICS_POOL
from quality.charts import markdown_image

OWNERS = ["team:analytics"]
COMPLETE_CHECK = dg.AssetCheckSpec(
    "all_facility_days_present",
    asset="network_weekly_report",
    description="Every configured facility has a `facility_daily_analytics` row for each of the 7 days.",
)

_WEEK_ROWS = """
SELECT facility_id, day, decisions, packages_seen, damaged_packages, misplaced_packages, anomalies_total,
       fallback_decisions, latency_p50_ms, latency_p99_ms, discrepancy_total
FROM facility_daily_analytics
WHERE day >= %s AND day < %s AND facility_id = ANY(%s)
ORDER BY facility_id, day
"""


def _rate(numerator: float, denominator: float) -> float:
    return float(numerator) / denominator if denominator else 0.0


def weekly_table(daily: pd.DataFrame, facilities: list[str]) -> pd.DataFrame:
    """One row per facility (configured ones without data included, as zeros) plus a network row."""
    rows = []
    groups = {f: daily[daily.facility_id == f] for f in facilities}
    for name, frame in [*groups.items(), ("NETWORK", daily)]:
        decisions = int(frame.decisions.sum())
        seen = int(frame.packages_seen.sum())
        weighted = frame.dropna(subset=["latency_p50_ms"])
        rows.append(
            {
                "facility": name,
                "days": int(frame.day.nunique()) if name != "NETWORK" else len(frame),
                "decisions": decisions,
                "packages_seen": seen,
                "damage_rate": _rate(frame.damaged_packages.sum(), seen),
                "misplacement_rate": _rate(frame.misplaced_packages.sum(), seen),
                "fallback_rate": _rate(frame.fallback_decisions.sum(), decisions),
                "anomalies": int(frame.anomalies_total.sum()),
                "latency_p50_ms": _rate(
                    (weighted.latency_p50_ms * weighted.decisions).sum(), weighted.decisions.sum()
                )
                if len(weighted)
                else None,
                "worst_p99_ms": float(frame.latency_p99_ms.max())
                if frame.latency_p99_ms.notna().any()
                else None,
                "discrepancy_total": int(frame.discrepancy_total.sum()),
            }
        )
    return pd.DataFrame(rows)


def markdown_table(table: pd.DataFrame) -> str:
    header = (
        "| facility | days | decisions | packages | damage | misplaced | fallback | anomalies | "
        "p50 ms (weighted) | worst p99 ms | discrepancy |"
    )
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in table.itertuples():
        p50 = (
            f"{r.latency_p50_ms:.1f}" if r.latency_p50_ms is not None and pd.notna(r.latency_p50_ms) else "–"
        )
        p99 = f"{r.worst_p99_ms:.1f}" if r.worst_p99_ms is not None and pd.notna(r.worst_p99_ms) else "–"
        lines.append(
            f"| {r.facility} | {r.days} | {r.decisions:,} | {r.packages_seen:,} | {r.damage_rate:.2%} | "
            f"{r.misplacement_rate:.2%} | {r.fallback_rate:.2%} | {r.anomalies:,} | {p50} | {p99} | "
            f"{r.discrepancy_total:,} |"
        )
    return "\n".join(lines)


def weekly_chart(title: str, daily: pd.DataFrame, table: pd.DataFrame, monday: date) -> bytes:
    """Left: network packages and damage rate per day. Right: damage rate per facility."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    days = [monday + timedelta(days=i) for i in range(7)]
    per_day = daily.groupby("day")[["packages_seen", "damaged_packages"]].sum().reindex(days, fill_value=0)
    facilities = table[table.facility != "NETWORK"].sort_values("damage_rate")
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, max(3.5, 0.18 * len(facilities) + 1.5)))
    left.bar([d.strftime("%a %d") for d in days], per_day.packages_seen, color="#30638e")
    left.set_ylabel("packages seen (network)")
    twin = left.twinx()
    rates = [_rate(d, s) for d, s in zip(per_day.damaged_packages, per_day.packages_seen, strict=True)]
    twin.plot(range(7), rates, color="#d1495b", marker="o")
    twin.set_ylabel("damage rate", color="#d1495b")
    right.barh(facilities.facility, facilities.damage_rate, color="#d1495b")
    right.set_xlabel("damage rate (week)")
    right.tick_params(axis="y", labelsize=7)
    fig.suptitle(title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def write_report(
    folder: Path, monday: date, title: str, table_md: str, table: pd.DataFrame, png: bytes
) -> Path:
    """``<folder>/<monday>.md`` (with the PNG beside it) and ``<monday>.html`` (self-contained)."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / monday.isoformat()
    stem.with_suffix(".png").write_bytes(png)
    stem.with_suffix(".md").write_text(
        f"# {title}\n\n![weekly chart]({stem.with_suffix('.png').name})\n\n{table_md}\n", encoding="utf-8"
    )
    cells = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
        for row in table.round(4).itertuples(index=False)
    )
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    image = base64.b64encode(png).decode()
    stem.with_suffix(".html").write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:right}</style></head>"
        f"<body><h1>{html.escape(title)}</h1><img alt='weekly chart' src='data:image/png;base64,{image}'>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table></body></html>",
        encoding="utf-8",
    )
    return stem.with_suffix(".md")


@dg.asset(
    partitions_def=weekly_partitions,
    deps=[
        dg.AssetDep(
            "facility_daily_analytics",
            partition_mapping=dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="date"),
        )
    ],
    group_name="facility_analytics",
    owners=OWNERS,
    kinds={"postgres", "pandas", "html"},
    tags={"domain": "analytics"},
    pool=ANALYTICS_POOL,
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=1),
    check_specs=[COMPLETE_CHECK],
    description=(
        "All facilities for one ISO week (Monday to Sunday, local days), from the daily rollups: packages, "
        "damage, misplacement and fallback rates, anomalies, latency, discrepancies; a table and a chart in "
        "the metadata and a Markdown + HTML report under .local/reports/network_weekly/."
    ),
)
def network_weekly_report(
    context: dg.AssetExecutionContext,
    database: DatabaseResource,
    settings: dg.ResourceParam[PipelineSettings],
) -> dg.MaterializeResult:
    monday = week_start(context)
    facilities = list(settings.facilities)
    rows, columns = [], []
    for shard, held in database.shards().by_shard(facilities).items():  # every shard with facilities
        with database.connect(shard=shard) as conn:
            cur = conn.execute(_WEEK_ROWS, (monday, monday + timedelta(days=7), held))
            rows += cur.fetchall()
            columns = [c.name for c in cur.description or []]
    rows.sort(key=lambda row: (row[0], row[1]))  # facility_id, day: as one database orders them
    daily = pd.DataFrame(rows, columns=columns)
    for column in ("latency_p50_ms", "latency_p99_ms"):
        daily[column] = daily[column].astype(float)
    table = weekly_table(daily, facilities)
    title = f"Network week of {monday.isoformat()} ({len(facilities)} facilities)"
    png = weekly_chart(title, daily, table, monday)
    table_md = markdown_table(table)
    path = write_report(
        settings.state_dir / "reports" / "network_weekly", monday, title, table_md, table, png
    )
    present = set(zip(daily.facility_id, daily.day, strict=True))
    missing = [
        f"{f} {monday + timedelta(days=i)}"
        for f in facilities
        for i in range(7)
        if (f, monday + timedelta(days=i)) not in present
    ]
    network = table.iloc[-1]
    metadata: dict[str, Any] = {
        "week": monday.isoformat(),
        "facilities": dg.MetadataValue.int(len(facilities)),
        "facility_days": dg.MetadataValue.int(len(daily)),
        "packages_seen": dg.MetadataValue.int(int(network.packages_seen)),
        "damage_rate": dg.MetadataValue.float(round(float(network.damage_rate), 5)),
        "table": dg.MetadataValue.md(table_md),
        "chart": dg.MetadataValue.md(markdown_image(png, title)),
        "report_path": dg.MetadataValue.path(str(path.resolve())),
        "html_path": dg.MetadataValue.path(str(path.with_suffix(".html").resolve())),
    }
    check = dg.AssetCheckResult(
        check_name=COMPLETE_CHECK.name,
        passed=not missing,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"missing": len(missing), "first_missing": dg.MetadataValue.json(missing[:20])},
    )
    context.log.info("%s: %d facility-days, %d missing", title, len(daily), len(missing))
    return dg.MaterializeResult(metadata=metadata, check_results=[check])
