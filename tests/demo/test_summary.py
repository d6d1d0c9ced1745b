"""The demo's summary is read back from what the platform stored: events, flags, accuracy by phase,
latency percentiles, ERP deliveries; and its charts render from that summary."""

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.types.json import Jsonb

from bench.fixtures.events import EventFactory
from contract.events import anomaly_flag, from_timestamp
from realtime.storage.writer import EventWriter, prepare
from wv.demo.scenario import Scenario
from wv.demo.summary import summarize, week_charts

FACILITIES = ("FAC-001", "FAC-002", "FAC-003")


def _day_events(facility: str, day_index: int, scenario: Scenario, packages: int, version: str) -> list:
    day = scenario.dates[day_index]
    start = datetime(day.year, day.month, day.day, 9, tzinfo=UTC)
    factory = EventFactory(
        facility, seed=day_index, start=start, step=timedelta(seconds=1), model_version=version
    )
    events = [e for _ in range(packages) for e in factory.package(detections=1)]
    decision = events[-1]
    decision.anomalies.append(
        anomaly_flag(kind="damaged", facility_id=facility, flagged_at=from_timestamp(decision.event_time),
                     event_id=decision.event_id, package_id=decision.package_id)
    )  # fmt: skip
    for i, event in enumerate(events):
        event.timings.end_to_end_ms = float(10 * (i + 1))
    return events


@pytest.mark.timeout(60)
def test_the_summary_counts_what_the_platform_stored(db: psycopg.Connection, database_url: str) -> None:
    scenario = Scenario(FACILITIES)
    with psycopg.connect(database_url) as conn:
        prepare(conn)
        EventWriter().write(conn, _day_events("FAC-001", 0, scenario, 4, "default"))
        EventWriter().write(conn, _day_events("FAC-002", 6, scenario, 5, "cand-1"))
        conn.commit()
    accuracies = [("FAC-002", 0, 1.0, 50), ("FAC-002", 3, 0.8, 40), ("FAC-002", 4, 0.7, 60),
                  ("FAC-002", 5, 0.9, 50), ("FAC-002", 6, 0.96, 50)]  # fmt: skip
    for facility, i, accuracy, verified in accuracies:
        db.execute(
            "INSERT INTO drift_evaluations (facility_id, eval_date, samples, verified, accuracy) "
            "VALUES (%s, %s, %s, %s, %s)",
            (facility, scenario.dates[i], verified, verified, accuracy),
        )
    for key, status in (("a", "sent"), ("b", "acknowledged"), ("c", "parked")):
        db.execute(
            "INSERT INTO erp_outbox (idempotency_key, kind, facility_id, business_date, payload, status) "
            "VALUES (%s, 'damage_claim', 'FAC-002', %s, %s, %s)",
            (key, scenario.dates[6], Jsonb({}), status),
        )

    summary = summarize(db, scenario)

    fac1, fac2, fac3 = summary.facilities
    assert (fac1.events, fac1.decisions, fac1.anomalies) == (8, 4, 1)
    assert (fac2.events, fac2.decisions, fac2.anomalies, fac2.drifted) == (10, 5, 1, True)
    assert (fac3.events, fac3.latency_p99_ms) == (0, None)
    assert fac2.accuracy == {  # days 1-3, day 4, day 5 (swap), days 6-7 weighted by verified samples
        "before drift": 1.0,
        "drift, old model": 0.8,
        "swap day": 0.7,
        "after swap": pytest.approx((0.9 * 50 + 0.96 * 50) / 100),
    }
    assert (fac2.latency_p50_ms, fac2.latency_p99_ms) == (50.0, 100.0)
    assert fac2.erp_records == 2
    assert summary.erp_by_status == {"sent": 1, "acknowledged": 1, "parked": 1}
    assert summary.daily_models["FAC-002"] == {scenario.dates[6]: {"cand-1": 5}}
    assert summary.anomalies_by_day[scenario.dates[0]] == {"damaged": 1}

    charts = week_charts(summary, scenario, swapped=True, threshold=0.94)
    assert {(c.name, c.asset) for c in charts} == {
        ("accuracy_over_time", "drift_evaluation"),
        ("latency_distribution", "facility_daily_analytics"),
        ("anomalies_per_day", "facility_daily_analytics"),
    }
    assert all(c.png.startswith(b"\x89PNG") for c in charts)


@pytest.mark.timeout(60)
def test_the_summary_reports_the_fallback_share_latency_and_what_the_primary_superseded(
    db: psycopg.Connection, database_url: str
) -> None:
    scenario = Scenario(FACILITIES)
    events = _day_events("FAC-001", 0, scenario, 4, "default")  # 4 detections, 4 decisions
    detection, decision = events[0], events[1]
    for event in (detection, decision, events[2]):  # two detections and a decision by the fallback
        event.fallback, event.model_version = True, "fallback"
    primary = EventFactory("FAC-001", seed=99).detection(model_version="default")
    primary.event_time.CopyFrom(detection.event_time)
    primary.track_id, primary.package_id = detection.track_id, detection.package_id
    primary.supersedes.append(detection.event_id)
    primary.timings.end_to_end_ms = 500.0
    with psycopg.connect(database_url) as conn:
        prepare(conn)
        EventWriter().write(conn, [*events, primary])
        conn.commit()

    fac1 = summarize(db, scenario).facilities[0]

    assert (fac1.events, fac1.decisions, fac1.fallback_events, fac1.fallback_decisions) == (9, 4, 3, 1)
    assert fac1.fallback_share == pytest.approx(3 / 9) and fac1.fallback_decision_share == 0.25
    assert fac1.superseded == 1
    assert (fac1.fallback_latency_p50_ms, fac1.fallback_latency_p99_ms) == (20.0, 30.0)  # events 1, 2, 3
