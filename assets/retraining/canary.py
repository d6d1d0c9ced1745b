"""``canary_comparison``: the canary against production like with like, and what happens next.

While ``wv model approve VERSION --canary …`` runs a version on some facilities or cameras, this
asset takes the canary's work on the days it decided (verified accuracy from ``verified_samples``,
p95 inference time, anomaly flags per decision, condition mix) and holds it against production's
work **on the canary's own targets**: production elsewhere is no measure of it, since a canary runs
where a person put it — in the demo, a retrained candidate that lifted the drifted FAC-002 from
85 % to 93.5 % was rolled back because production read 100 % on the healthy facilities.

The baseline (recorded on the version and shown in the metadata):

- **Accuracy, anomaly rate and condition mix: production on the same facilities or cameras just
  before the canary** (event time before the canary's first decision there, not the registry's
  wall-clock start — the ``approve`` row —: a replayed or simulated day sits where its events say,
  and production's work during the edge's shadow run still counts). The nearest days on which
  production decided there, as few as give it ``min_verified`` verified samples, at most
  ``baseline_days``: a canary usually follows a drift, and older days are likely from before it. A
  camera canary is held against the **same cameras** before it, not the facility's other cameras on
  the same days: a person puts a camera canary where production is weakest (the knocked mount, the
  dim dock), and a camera's accuracy and anomaly rate follow its own view (angle, light, the lane
  and zones it watches), which the other cameras do not share — they would be the healthy
  comparison that rolled the demo's candidate back, only nearer. Time is the weaker confounder, and
  the walk-back keeps it to the fewest days.
- **p95 inference time: production fleet-wide on the same days.** The model's speed depends on the
  edge's hardware and load, not on what its cameras see; the same days keep a day's load (and any
  engine or driver change) common to both arms. It assumes one hardware class across the fleet.
- **No baseline on the targets** (production never decided there in reach — a new facility — or
  with fewer than ``min_verified`` verified samples in ``baseline_days`` days): production
  fleet-wide on the same days, and the reasons say so.

A clear loss rolls the canary back at once (the registry records who: this asset); otherwise the
decision (promotion recommended, or keep watching) is recorded on the version and a person goes
fleet-wide with ``wv model approve VERSION --by NAME``. Reads the home database (a sharded
deployment's other facilities are not compared yet).
"""

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any, Literal

import dagster as dg
import psycopg

from assets.common.resources import DatabaseResource, ModelRegistryResource
from contract.canary_pointer import Canary
from quality.canary import Arm, Bounds, decide, mix_agreement, nearest_days
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
    baseline_days: int = 7
    """How many of production's last days on the canary's targets before the canary the baseline may
    reach back for ``min_verified`` verified samples (days on which production decided there)."""

    def bounds(self) -> Bounds:
        return Bounds(
            self.min_verified, self.max_accuracy_drop, self.max_latency_ratio, self.max_anomaly_ratio
        )


_TARGETS = """(%(fleet)s OR {a}.facility_id = ANY(%(facilities)s) OR {a}.camera_id = ANY(%(cameras)s)
    OR {a}.facility_id || '/' || {a}.camera_id = ANY(%(cameras)s))"""
"""Rows of table alias ``a`` on the canary's targets (``Canary.covers``: a facility, ``FACILITY/CAMERA``
or a bare camera id in any facility), or every row when ``fleet``."""
_BEFORE = "{a}.event_time < coalesce(%(until)s::timestamptz, 'infinity')"


def _scope(a: str, day: str) -> str:
    """Rows of alias ``a`` on ``days`` (by its column ``day``), before ``until``, on the targets."""
    return f"{day} = ANY(%(days)s) AND {_BEFORE.format(a=a)} AND {_TARGETS.format(a=a)}"


_DAYS = """
SELECT day FROM (
    SELECT DISTINCT (event_time AT TIME ZONE 'UTC')::date AS day, model_version FROM package_detections
    WHERE kind = 'decision' AND model_version IN (%(canary)s, %(production)s)
) both_arms GROUP BY day HAVING count(*) = 2 ORDER BY day
"""
"""Days on which both versions decided: the canary decides only once it runs, so these are days of
its trial (by event time, which a replayed or simulated day has in its past)."""
_STARTED = f"""
SELECT min(d.event_time) FROM package_detections d
WHERE d.kind = 'decision' AND d.model_version = %(version)s AND {_TARGETS.format(a="d")}
"""
"""The canary's first decision on its targets: where production's baseline ends (event time)."""
_BASELINE_DAYS = f"""
WITH decided AS (
    SELECT DISTINCT (d.event_time AT TIME ZONE 'UTC')::date AS day FROM package_detections d
    WHERE d.kind = 'decision' AND d.model_version = %(version)s AND {_BEFORE.format(a="d")}
      AND {_TARGETS.format(a="d")}
), verified AS (
    SELECT v.sample_date AS day, count(v.verified_condition) AS n FROM verified_samples v
    WHERE v.model_version = %(version)s AND {_BEFORE.format(a="v")} AND {_TARGETS.format(a="v")}
    GROUP BY v.sample_date
)
SELECT day, coalesce(n, 0) FROM decided LEFT JOIN verified USING (day) ORDER BY day DESC LIMIT %(max_days)s
"""
"""Production's last days on the targets before the canary, newest first, with their verified samples."""
_DECISIONS = f"""
SELECT count(*), percentile_cont(0.95) WITHIN GROUP (ORDER BY d.infer_ms) FROM package_detections d
WHERE d.kind = 'decision' AND d.model_version = %(version)s
  AND {_scope("d", "(d.event_time AT TIME ZONE 'UTC')::date")}
"""
_CONDITIONS = f"""
SELECT q.condition, count(*) FROM quality_assessments q
JOIN package_detections d ON d.event_time = q.event_time AND d.event_id = q.event_id AND d.kind = 'decision'
WHERE q.model_version = %(version)s AND {_scope("d", "(d.event_time AT TIME ZONE 'UTC')::date")}
GROUP BY q.condition
"""
_ANOMALIES = f"""
SELECT count(*) FROM anomaly_flags a
WHERE a.event_id <> '' AND (a.flagged_at AT TIME ZONE 'UTC')::date = ANY(%(days)s) AND a.event_id IN (
    SELECT d.event_id FROM package_detections d WHERE d.model_version = %(version)s
      AND {_scope("d", "(d.event_time AT TIME ZONE 'UTC')::date")})
"""
_VERIFIED = f"""
SELECT count(v.verified_condition), count(*) FILTER (WHERE v.verified_condition = v.predicted_condition)
FROM verified_samples v WHERE v.model_version = %(version)s AND {_scope("v", "v.sample_date")}
"""


def arm(
    conn: psycopg.Connection[Any],
    version: str,
    days: list[date],
    targets: Canary | None = None,
    until: datetime | None = None,
) -> Arm:
    """What ``version`` did on ``days`` (before ``until``): everywhere, or on ``targets`` only."""
    params = {
        "version": version,
        "days": days,
        "until": until,
        "fleet": targets is None,
        "facilities": list(targets.facilities) if targets else [],
        "cameras": list(targets.cameras) if targets else [],
    }
    decisions, p95 = conn.execute(_DECISIONS, params).fetchone() or (0, None)
    verified, correct = conn.execute(_VERIFIED, params).fetchone() or (0, 0)
    (anomalies,) = conn.execute(_ANOMALIES, params).fetchone() or (0,)
    conditions = {c: int(n) for c, n in conn.execute(_CONDITIONS, params).fetchall()}
    p95_ms = float(p95) if p95 is not None else None
    return Arm(version, int(decisions), int(verified), int(correct), int(anomalies), p95_ms, conditions)


@dataclass(frozen=True)
class Baseline:
    """Which production work the canary is held against."""

    rule: Literal["targets_before_canary", "fleet_same_days"]
    """``fleet_same_days`` only when there is no usable baseline on the targets."""
    description: str
    days: list[date]
    until: datetime | None = None

    def record(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "description": self.description,
            "days": [d.isoformat() for d in self.days],
            "until": self.until.isoformat() if self.until else None,
        }


def _span(days: list[date]) -> str:
    first, last = min(days).isoformat(), max(days).isoformat()
    return first if first == last else f"{first}–{last}"


def baseline(
    conn: psycopg.Connection[Any],
    canary: Canary,
    production: str,
    days: list[date],
    config: CanaryComparisonConfig,
) -> Baseline:
    """Production's work on the canary's targets just before it (see the module docstring), or
    production fleet-wide on the canary's ``days`` when there is none to use."""
    targets = {"fleet": False, "facilities": list(canary.facilities), "cameras": list(canary.cameras)}
    (started,) = conn.execute(_STARTED, {"version": canary.version, **targets}).fetchone() or (None,)
    until = started.astimezone(UTC) if started else datetime.now(UTC)  # not decided yet: up to now
    rows = conn.execute(
        _BASELINE_DAYS,
        {"version": production, "until": until, "max_days": config.baseline_days, **targets},
    ).fetchall()
    chosen = nearest_days([(d, int(n)) for d, n in rows], config.min_verified)
    if chosen:
        return Baseline(
            "targets_before_canary",
            f"production on {canary.describe()}, {_span(chosen)} before the canary "
            + (
                f"(the canary's first decision there: {until:%Y-%m-%d %H:%M} UTC)"
                if started
                else "(no decision yet)"
            ),
            sorted(chosen),
            until,
        )
    why = (
        f"production never decided on {canary.describe()} before the canary"
        if not rows
        else f"production's {sum(int(n) for _, n in rows)} verified samples on {canary.describe()} in its "
        f"last {len(rows)} day(s) there before the canary are fewer than {config.min_verified}"
    )
    return Baseline("fleet_same_days", f"production fleet-wide on the same days (no baseline: {why})", days)


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
        "The running canary (`wv model approve VERSION --canary …`) against production on the canary's own "
        "facilities or cameras just before it started (p95 inference time: production fleet-wide on the same "
        "days; no baseline there: production fleet-wide on the same days): verified accuracy, p95 inference "
        "time, anomaly rate and condition-mix agreement, with a chart. A clear loss rolls the canary back "
        "automatically; otherwise the recorded decision awaits a person's fleet-wide approval."
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
        base = baseline(conn, canary, production.version, days, config)
        fleet = arm(conn, production.version, days)
        on_targets = base.rule == "targets_before_canary"
        arms = {
            "canary": arm(conn, canary.version, days),
            # The p95 inference time stays the fleet's on the same days (module docstring).
            "production": (
                replace(
                    arm(conn, production.version, base.days, canary, base.until),
                    p95_infer_ms=fleet.p95_infer_ms,
                )
                if on_targets
                else fleet
            ),
        }
    decision = decide(arms["canary"], arms["production"], config.bounds())
    reasons = decision.reasons if on_targets else [*decision.reasons, base.description]
    agreement = mix_agreement(arms["canary"].conditions, arms["production"].conditions)
    where = {
        "canary": f"{canary.describe()}, {_span(days)}" if days else canary.describe(),
        "production": base.description,
    }
    record: dict[str, Any] = {
        "verdict": decision.verdict,
        "reasons": reasons,
        "at": datetime.now(UTC).isoformat(),
        "by": ACTOR,
        "production": production.version,
        "targets": canary.describe(),
        "days": [d.isoformat() for d in days],
        "baseline": base.record(),
        "condition_mix_agreement": agreement,
        "figures": {name: figures(a) for name, a in arms.items()},
        "production_fleet_same_days": figures(fleet),  # for reference
    }
    if decision.verdict == "rollback":
        registry.roll_back_canary(
            ACTOR, "; ".join(decision.reasons) + f" (against {base.description})", record
        )
        next_step = f"rolled back: {canary.describe()} are back on {production.version}"
    else:
        registry.update_metrics(canary.version, {"canary_decision": record})
        next_step = (
            f"a person approves the fleet-wide rollout: wv model approve {canary.version} --by NAME"
            if decision.verdict == "promote_recommended"
            else "keep the canary running: too few verified samples yet"
        )
    context.log.info(
        "canary %s vs %s (%s): %s (%s)",
        canary.version,
        production.version,
        base.description,
        decision.verdict,
        next_step,
    )
    rows = "\n".join(
        f"| {name} | {a.version} | {where[name]} | {a.decisions} | {a.verified} | "
        f"{'-' if a.accuracy is None else f'{a.accuracy:.1%}'} | "
        f"{'-' if a.p95_infer_ms is None else f'{a.p95_infer_ms:.1f}'} | "
        f"{'-' if a.anomaly_rate is None else f'{a.anomaly_rate:.2%}'} |"
        for name, a in arms.items()
    )
    table = (
        "| arm | version | where and when | decisions | verified | verified accuracy | p95 inference ms "
        "| anomalies/decision |\n|---|---|---|---|---|---|---|---|\n"
        + rows
        + "\n\nProduction's p95 inference ms: fleet-wide on the same days (the model's speed follows the "
        "edge's hardware, not the facility)."
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
            "baseline": base.description,
            "baseline_rule": base.rule,
            "verdict": decision.verdict,
            "reasons": dg.MetadataValue.json(reasons),
            "next_step": next_step,
            "condition_mix_agreement": "-" if agreement is None else f"{agreement:.3f}",
            "comparison": dg.MetadataValue.md(table),
            "chart": dg.MetadataValue.md(markdown_image(png, "canary vs production")),
        }
    )
