"""``canary_comparison``: the canary against production on the same days, and what happens next.

While ``wv model approve VERSION --canary …`` runs a version on some facilities or cameras, this
asset takes the days on which both versions made decisions and compares them there: verified accuracy (``verified_samples``), p95 inference time, anomaly flags per
decision and how alike their condition mixes are. A clear loss rolls the canary back at once (the
registry records who: this asset); otherwise the decision (promotion recommended, or keep watching)
is recorded on the version and a person goes fleet-wide with ``wv model approve VERSION --by NAME``.
Reads the home database (a sharded deployment's other facilities are not compared yet).
"""

from datetime import UTC, date, datetime
from typing import Any

import dagster as dg
import psycopg

from assets.common.resources import DatabaseResource, ModelRegistryResource
from quality.canary import Arm, Bounds, decide, mix_agreement
from quality.charts import comparison_chart, markdown_image

OWNERS = ["team:ml-platform"]
ACTOR = "canary_comparison"
"""Who the registry records for an automatic rollback."""


class CanaryComparisonConfig(dg.Config):
    min_verified: int = 30
    """Verified samples each arm needs before accuracy counts and a promotion is recommended."""
    max_accuracy_drop: float = 0.02
    max_latency_ratio: float = 1.5
    max_anomaly_ratio: float = 2.0

    def bounds(self) -> Bounds:
        return Bounds(
            self.min_verified, self.max_accuracy_drop, self.max_latency_ratio, self.max_anomaly_ratio
        )


_DAYS = """
SELECT day FROM (
    SELECT DISTINCT (event_time AT TIME ZONE 'UTC')::date AS day, model_version FROM package_detections
    WHERE kind = 'decision' AND model_version IN (%(canary)s, %(production)s)
) both_arms GROUP BY day HAVING count(*) = 2 ORDER BY day
"""
"""Days on which both versions decided: the canary decides only once it runs, so these are days of
its trial (by event time, which a replayed or simulated day has in its past)."""
_DECISIONS = """
SELECT count(*), percentile_cont(0.95) WITHIN GROUP (ORDER BY infer_ms) FROM package_detections
WHERE kind = 'decision' AND model_version = %(version)s AND (event_time AT TIME ZONE 'UTC')::date = ANY(%(days)s)
"""
_CONDITIONS = """
SELECT q.condition, count(*) FROM quality_assessments q
JOIN package_detections d ON d.event_time = q.event_time AND d.event_id = q.event_id AND d.kind = 'decision'
WHERE q.model_version = %(version)s AND (q.event_time AT TIME ZONE 'UTC')::date = ANY(%(days)s)
GROUP BY q.condition
"""
_ANOMALIES = """
SELECT count(*) FROM anomaly_flags a
WHERE a.event_id <> '' AND (a.flagged_at AT TIME ZONE 'UTC')::date = ANY(%(days)s) AND a.event_id IN (
    SELECT event_id FROM package_detections WHERE model_version = %(version)s
      AND (event_time AT TIME ZONE 'UTC')::date = ANY(%(days)s))
"""
_VERIFIED = """
SELECT count(verified_condition), count(*) FILTER (WHERE verified_condition = predicted_condition)
FROM verified_samples WHERE model_version = %(version)s AND sample_date = ANY(%(days)s)
"""


def arm(conn: psycopg.Connection[Any], version: str, days: list[date]) -> Arm:
    """What ``version`` did on ``days``."""
    params = {"version": version, "days": days}
    decisions, p95 = conn.execute(_DECISIONS, params).fetchone() or (0, None)
    verified, correct = conn.execute(_VERIFIED, params).fetchone() or (0, 0)
    (anomalies,) = conn.execute(_ANOMALIES, params).fetchone() or (0,)
    conditions = {c: int(n) for c, n in conn.execute(_CONDITIONS, params).fetchall()}
    p95_ms = float(p95) if p95 is not None else None
    return Arm(version, int(decisions), int(verified), int(correct), int(anomalies), p95_ms, conditions)


def figures(a: Arm) -> dict[str, float | None]:
    return {
        "verified accuracy": a.accuracy,
        "p95 inference ms": a.p95_infer_ms,
        "anomalies per decision": a.anomaly_rate,
        "decisions": float(a.decisions),
    }


@dg.asset(
    group_name="retraining",
    owners=OWNERS,
    kinds={"postgres", "python"},
    tags={"domain": "retraining"},
    description=(
        "The running canary (`wv model approve VERSION --canary …`) against production on the same days: "
        "verified accuracy, p95 inference time, anomaly rate and condition-mix agreement, with a chart. A clear "
        "loss rolls the canary back automatically; otherwise the recorded decision awaits a person's fleet-wide "
        "approval."
    ),
)
def canary_comparison(
    context: dg.AssetExecutionContext,
    config: CanaryComparisonConfig,
    database: DatabaseResource,
    model_registry: ModelRegistryResource,
) -> dg.MaterializeResult:
    registry = model_registry.registry()
    canary = registry.canary()
    production = registry.production()
    if canary is None or production is None:
        context.log.info("no canary is running")
        return dg.MaterializeResult(metadata={"canary": "none running"})
    with database.connect() as conn:
        params = {"canary": canary.version, "production": production.version}
        days = [r[0] for r in conn.execute(_DAYS, params).fetchall()]
        arms = {"canary": arm(conn, canary.version, days), "production": arm(conn, production.version, days)}
    decision = decide(arms["canary"], arms["production"], config.bounds())
    agreement = mix_agreement(arms["canary"].conditions, arms["production"].conditions)
    record: dict[str, Any] = {
        "verdict": decision.verdict,
        "reasons": decision.reasons,
        "at": datetime.now(UTC).isoformat(),
        "by": ACTOR,
        "production": production.version,
        "targets": canary.describe(),
        "days": [d.isoformat() for d in days],
        "condition_mix_agreement": agreement,
        "figures": {name: figures(a) for name, a in arms.items()},
    }
    if decision.verdict == "rollback":
        registry.roll_back_canary(ACTOR, "; ".join(decision.reasons), record)
        next_step = f"rolled back: {canary.describe()} are back on {production.version}"
    else:
        registry.update_metrics(canary.version, {"canary_decision": record})
        next_step = (
            f"a person approves the fleet-wide rollout: wv model approve {canary.version} --by NAME"
            if decision.verdict == "promote_recommended"
            else "keep the canary running: too few verified samples yet"
        )
    context.log.info(
        "canary %s vs %s: %s (%s)", canary.version, production.version, decision.verdict, next_step
    )
    rows = "\n".join(
        f"| {name} | {a.version} | {a.decisions} | {a.verified} | "
        f"{'-' if a.accuracy is None else f'{a.accuracy:.1%}'} | "
        f"{'-' if a.p95_infer_ms is None else f'{a.p95_infer_ms:.1f}'} | "
        f"{'-' if a.anomaly_rate is None else f'{a.anomaly_rate:.2%}'} |"
        for name, a in arms.items()
    )
    table = (
        "| arm | version | decisions | verified | verified accuracy | p95 inference ms | anomalies/decision |\n"
        "|---|---|---|---|---|---|---|\n" + rows
    )
    png = comparison_chart(
        f"canary {canary.version} vs production {production.version}",
        {f"{name}\n{a.version}": figures(a) for name, a in arms.items()},
        ["verified accuracy", "p95 inference ms", "anomalies per decision"],
    )
    return dg.MaterializeResult(
        metadata={
            "canary": canary.version,
            "production": production.version,
            "targets": canary.describe(),
            "days_compared": dg.MetadataValue.json(record["days"]),
            "verdict": decision.verdict,
            "reasons": dg.MetadataValue.json(decision.reasons),
            "next_step": next_step,
            "condition_mix_agreement": "-" if agreement is None else f"{agreement:.3f}",
            "comparison": dg.MetadataValue.md(table),
            "chart": dg.MetadataValue.md(markdown_image(png, "canary vs production")),
        }
    )
