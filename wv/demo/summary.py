"""What the week amounted to, read back from the database: the table the demo ends with.

Per facility: events stored, decisions, anomaly flags, verified accuracy in each phase of the
story (before the drift, drifted days on the old model, after the swap), end-to-end latency
percentiles measured at the edge, the straggler fallback's share of events and decisions, its
latency and how many of its detections the late primary superseded, and ERP records delivered. Also the per-day series behind
the charts. Everything is computed from the tables the platform wrote, never from the demo's
own bookkeeping, so the summary doubles as a check that the data really flowed.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

from wv.demo.scenario import Scenario

PHASES = ("before drift", "drift, old model", "swap day", "after swap")
DELIVERED = ("sent", "acknowledged")


@dataclass
class FacilitySummary:
    facility: str
    drifted: bool
    events: int = 0
    decisions: int = 0
    anomalies: int = 0
    accuracy: dict[str, float | None] = field(default_factory=dict)
    """Verified accuracy per phase (weighted by verified samples)."""
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    fallback_events: int = 0
    """Events the straggler fallback made (detections and decisions, superseded ones included)."""
    fallback_decisions: int = 0
    superseded: int = 0
    """Fallback detections the primary's late result replaced."""
    fallback_latency_p50_ms: float | None = None
    fallback_latency_p99_ms: float | None = None
    """End to end at the edge, of the fallback's events."""
    erp_records: int = 0
    """ERP messages delivered (damage claims and discrepancy reports; the files adapter cannot
    acknowledge, so 'sent' counts)."""

    @property
    def fallback_share(self) -> float | None:
        return self.fallback_events / self.events if self.events else None

    @property
    def fallback_decision_share(self) -> float | None:
        return self.fallback_decisions / self.decisions if self.decisions else None


@dataclass
class WeekSummary:
    facilities: list[FacilitySummary]
    daily_accuracy: dict[str, list[tuple[date, float | None]]]
    daily_models: dict[str, dict[date, dict[str, int]]]
    """facility → day → model version → decisions."""
    anomalies_by_day: dict[date, dict[str, int]]
    latency_samples: dict[str, list[float]]
    erp_by_status: dict[str, int]

    def as_json(self) -> dict[str, Any]:
        return {
            "facilities": [
                {
                    **asdict(f),
                    "fallback_share": f.fallback_share,
                    "fallback_decision_share": f.fallback_decision_share,
                }
                for f in self.facilities
            ],
            "daily_accuracy": {
                f: [(d.isoformat(), a) for d, a in points] for f, points in self.daily_accuracy.items()
            },
            "daily_models": {
                f: {d.isoformat(): v for d, v in days.items()} for f, days in self.daily_models.items()
            },
            "anomalies_by_day": {d.isoformat(): v for d, v in self.anomalies_by_day.items()},
            "erp_by_status": self.erp_by_status,
        }


def _window(scenario: Scenario) -> tuple[datetime, datetime]:
    first, last = scenario.dates[0], scenario.dates[-1]
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    return start, datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)


def summarize(conn: psycopg.Connection[Any], scenario: Scenario) -> WeekSummary:
    start, end = _window(scenario)
    window = {"start": start, "end": end, "facilities": list(scenario.facilities)}
    per = {f: FacilitySummary(f, f == scenario.drifted_facility) for f in scenario.facilities}
    latency: dict[str, list[float]] = defaultdict(list)
    fallback_latency: dict[str, list[float]] = defaultdict(list)
    for facility, kind, ms, fallback, superseded in conn.execute(
        "SELECT facility_id, kind, end_to_end_ms, fallback, superseded_by IS NOT NULL FROM package_detections "
        "WHERE event_time >= %(start)s AND event_time < %(end)s AND facility_id = ANY(%(facilities)s)",
        window,
    ):
        f = per[facility]
        f.events += 1
        f.decisions += kind == "decision"
        f.fallback_events += fallback
        f.fallback_decisions += fallback and kind == "decision"
        f.superseded += superseded
        if ms is not None:
            latency[facility].append(float(ms))
            if fallback:
                fallback_latency[facility].append(float(ms))
    for facility, samples in latency.items():
        per[facility].latency_p50_ms, per[facility].latency_p99_ms = _p50_p99(samples)
    for facility, samples in fallback_latency.items():
        per[facility].fallback_latency_p50_ms, per[facility].fallback_latency_p99_ms = _p50_p99(samples)

    anomalies: dict[date, dict[str, int]] = {d: {} for d in scenario.dates}
    for facility, day, kind, n in conn.execute(
        "SELECT facility_id, (flagged_at AT TIME ZONE 'UTC')::date, kind, count(*) FROM anomaly_flags "
        "WHERE flagged_at >= %(start)s AND flagged_at < %(end)s AND facility_id = ANY(%(facilities)s) "
        "GROUP BY 1, 2, 3",
        window,
    ):
        per[facility].anomalies += n
        if day in anomalies:
            anomalies[day][kind] = anomalies[day].get(kind, 0) + n

    daily: dict[str, list[tuple[date, float | None]]] = {f: [] for f in scenario.facilities}
    weighted: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for facility, day, accuracy, verified in conn.execute(
        "SELECT facility_id, eval_date, accuracy, verified FROM drift_evaluations "
        "WHERE eval_date >= %s AND eval_date <= %s AND facility_id = ANY(%s) ORDER BY eval_date",
        (scenario.dates[0], scenario.dates[-1], list(scenario.facilities)),
    ):
        daily[facility].append((day, accuracy))
        if accuracy is not None and verified:
            bucket = weighted[(facility, scenario.phase(facility, day))]
            bucket[0] += accuracy * verified
            bucket[1] += verified
    for facility, summary in per.items():
        for phase in PHASES:
            total, n = weighted.get((facility, phase), (0.0, 0.0))
            summary.accuracy[phase] = round(total / n, 4) if n else None

    models: dict[str, dict[date, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
    for facility, day, version, n in conn.execute(
        "SELECT facility_id, (event_time AT TIME ZONE 'UTC')::date, model_version, count(*) "
        "FROM package_detections WHERE kind = 'decision' AND event_time >= %(start)s AND event_time < %(end)s "
        "AND facility_id = ANY(%(facilities)s) GROUP BY 1, 2, 3",
        window,
    ):
        models[facility][day][version] = n

    erp: dict[str, int] = defaultdict(int)
    for facility, status, n in conn.execute(
        "SELECT facility_id, status, count(*) FROM erp_outbox "
        "WHERE business_date >= %s AND business_date <= %s AND facility_id = ANY(%s) GROUP BY 1, 2",
        (scenario.dates[0], scenario.dates[-1], list(scenario.facilities)),
    ):
        erp[status] += n
        if status in DELIVERED:
            per[facility].erp_records += n
    return WeekSummary(
        facilities=[per[f] for f in scenario.facilities],
        daily_accuracy=daily,
        daily_models={f: dict(d) for f, d in models.items()},
        anomalies_by_day=anomalies,
        latency_samples=dict(latency),
        erp_by_status=dict(erp),
    )


def _p50_p99(samples: list[float]) -> tuple[float | None, float | None]:
    ordered = sorted(samples)
    return _percentile(ordered, 0.50), _percentile(ordered, 0.99)


def _percentile(ordered: list[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted values."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))]


@dataclass(frozen=True)
class Chart:
    name: str
    asset: str
    """The asset whose page shows it."""
    description: str
    png: bytes


def week_charts(summary: WeekSummary, scenario: Scenario, swapped: bool, threshold: float) -> list[Chart]:
    """Accuracy over time (drift and swap marked), latency distribution, anomalies per day."""
    from quality.story_charts import accuracy_timeline, anomalies_per_day, latency_distribution

    drift_day = scenario.dates[scenario.drift_day - 1]
    events: list[tuple[date | datetime, str]] = [
        (drift_day, f"{scenario.drift} at {scenario.drifted_facility}")
    ]
    # On the simulated clock the swap happens during the swap day's traffic (its burst).
    swap_day = datetime.combine(scenario.dates[scenario.swap_day - 1], scenario.burst_time)
    events.append((swap_day, "model swap" if swapped else "no swap (candidate not approved)"))
    accuracy = accuracy_timeline(
        summary.daily_accuracy,
        threshold,
        events,
        title="Verified accuracy per facility and day (drift_evaluation)",
    )
    return [
        Chart(
            "accuracy_over_time",
            "drift_evaluation",
            "Demo week: verified accuracy per facility and day, drift start and model swap marked.",
            accuracy,
        ),
        Chart(
            "latency_distribution",
            "facility_daily_analytics",
            "Demo week: end-to-end latency per event measured at the edges.",
            latency_distribution(summary.latency_samples),
        ),
        Chart(
            "anomalies_per_day",
            "facility_daily_analytics",
            "Demo week: anomaly flags per day and kind, all facilities.",
            anomalies_per_day(summary.anomalies_by_day),
        ),
    ]
