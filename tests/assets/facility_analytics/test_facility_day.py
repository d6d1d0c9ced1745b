"""A facility-day's analytics equal an independent recomputation from the raw events, and re-runs replace."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from assets.facility_analytics.sql import FacilityNotFound, refresh_facility_day
from contract.events import CONDITION_NAME, SEVERITY_NAME, from_timestamp
from contract.proto import warehouse_vision_pb2 as pb

pytestmark = pytest.mark.timeout(60)
DAY = (datetime.now(UTC) - timedelta(days=3)).date()
ZONES = {"inbound": 12, "sorter": 15, "outbound": 9, "dock-9": 4}


def recompute(written, facility: str, day: date, timezone: str, zones: dict[str, int]) -> dict:
    """The day's figures from the events in Python, without SQL."""
    tz = ZoneInfo(timezone)
    start, end = datetime.combine(day, time(), tz), datetime.combine(day + timedelta(days=1), time(), tz)
    decisions = [
        e
        for e in written.events
        if e.kind == pb.EVENT_KIND_DECISION
        and e.facility_id == facility
        and start <= from_timestamp(e.event_time) < end
    ]
    packages = {e.package_id for e in decisions}
    damaged = {e.package_id for e in decisions if CONDITION_NAME[e.condition] != "ok"}
    misplaced = {e.package_id for e in decisions if e.expected_zone and e.zone != e.expected_zone}
    hours = [0] * 24
    for e in decisions:
        hours[from_timestamp(e.event_time).astimezone(tz).hour] += 1
    latencies = np.array([e.timings.end_to_end_ms for e in decisions], dtype=np.float32).astype(np.float64)
    flags = {f.anomaly_id: f for f in written.flags}  # the flag's idempotency key, as stored
    anomalies: dict[str, dict[str, int]] = defaultdict(dict)
    for (kind, severity), n in Counter(
        (f.kind, SEVERITY_NAME[f.severity])
        for f in flags.values()
        if f.facility_id == facility and start <= from_timestamp(f.flagged_at) < end
    ).items():
        anomalies[kind][severity] = n
    seen_by_zone: dict[str, set[str]] = defaultdict(set)
    for e in decisions:
        seen_by_zone[e.zone].add(e.package_id)
    zone_rows = {
        z: (zones.get(z, 0), len(seen_by_zone.get(z, ())), len(seen_by_zone.get(z, ())) - zones.get(z, 0))
        for z in set(zones) | set(seen_by_zone)
    }
    return {
        "window_start": start,
        "window_end": end,
        "decisions": len(decisions),
        "packages_seen": len(packages),
        "throughput_by_hour": hours,
        "damaged_packages": len(damaged),
        "damage_rate": len(damaged) / len(packages),
        "misplaced_packages": len(misplaced),
        "misplacement_rate": len(misplaced) / len(packages),
        "anomalies": dict(anomalies),
        "anomalies_total": sum(sum(s.values()) for s in anomalies.values()),
        "latency_p50_ms": float(np.percentile(latencies, 50)),
        "latency_p99_ms": float(np.percentile(latencies, 99)),
        "fallback_decisions": sum(e.fallback for e in decisions),
        "fallback_rate": sum(e.fallback for e in decisions) / len(decisions),
        "unassessed_decisions": 0,
        "discrepancy_total": sum(abs(d) for _, _, d in zone_rows.values()),
        "zones": zone_rows,
        "damaged_ids": damaged,
    }


def assert_matches(result, expected) -> None:
    row = result.row
    for name, value in expected.items():
        if name in ("zones", "damaged_ids"):
            continue
        if isinstance(value, float):
            assert row[name] == pytest.approx(value, rel=1e-9, abs=1e-6), name
        else:
            assert row[name] == value, name
    assert {
        z["zone_id"]: (z["expected_packages"], z["seen_packages"], z["discrepancy"]) for z in result.zones
    } == (expected["zones"])


@pytest.mark.parametrize("timezone", ["America/New_York", "Asia/Kolkata"])
def test_facility_day_equals_independent_recomputation_in_the_facility_time_zone(
    db, seeder, set_facility, timezone
):
    set_facility("FAC-001", timezone, expected=40, zones=ZONES)
    written = seeder.facility_day("FAC-001", DAY, timezone)
    written += seeder.facility_day("FAC-001", DAY + timedelta(days=1), timezone, packages=7)
    written += seeder.facility_day("FAC-002", DAY, "UTC", packages=9)

    result = refresh_facility_day(db, "FAC-001", DAY)

    expected = recompute(written, "FAC-001", DAY, timezone, ZONES)
    # 40 packages, 4 decided twice, one on the window start, one a microsecond before the next day
    assert expected["decisions"] == 46
    assert_matches(result, expected)
    assert result.row["timezone"] == timezone and result.row["source"] == "raw"
    claims = db.execute(
        "SELECT payload->>'package_id' FROM erp_outbox WHERE kind = 'damage_claim' AND facility_id = 'FAC-001'"
    ).fetchall()
    assert {p for (p,) in claims} == expected["damaged_ids"]
    (lines,) = db.execute(
        "SELECT payload->'lines' FROM erp_outbox WHERE kind = 'discrepancy_report'"
    ).fetchone()
    assert {line["zone_id"]: line["discrepancy"] for line in lines} == {
        z: d for z, (_, _, d) in expected["zones"].items()
    }


def test_hourly_aggregate_and_raw_decisions_give_the_same_throughput(db, seeder, set_facility):
    set_facility("FAC-001", "Europe/Berlin")
    seeder.facility_day("FAC-001", DAY, "Europe/Berlin")

    raw = refresh_facility_day(db, "FAC-001", DAY, hourly="raw").row
    aggregate = refresh_facility_day(db, "FAC-001", DAY, hourly="aggregate").row

    assert aggregate["source"] == "hourly_aggregate"
    assert aggregate["throughput_by_hour"] == raw["throughput_by_hour"]
    assert sum(raw["throughput_by_hour"]) == raw["decisions"]


def test_rerun_replaces_the_partition_and_never_duplicates_erp_messages(db, seeder, set_facility):
    set_facility("FAC-001", "UTC", zones=ZONES)
    written = seeder.facility_day("FAC-001", DAY, "UTC")
    first = refresh_facility_day(db, "FAC-001", DAY)
    claims = first.claims_enqueued
    db.execute(
        "UPDATE erp_outbox SET status = 'acknowledged', external_id = 'QM-1' WHERE kind = 'damage_claim'"
    )

    again = refresh_facility_day(db, "FAC-001", DAY)
    assert again.claims_enqueued == 0 and again.reports_enqueued == 0 and again.outbox_withdrawn == 0
    assert {k: v for k, v in again.row.items() if k != "computed_at"} == {
        k: v for k, v in first.row.items() if k != "computed_at"
    }

    more = seeder.facility_day("FAC-001", DAY, "UTC", packages=12)
    written += more
    third = refresh_facility_day(db, "FAC-001", DAY)

    assert_matches(third, recompute(written, "FAC-001", DAY, "UTC", ZONES))
    assert db.execute("SELECT count(*) FROM facility_daily_analytics").fetchone() == (1,)
    assert db.execute("SELECT count(*) FROM facility_zone_daily_analytics").fetchone() == (len(ZONES),)
    statuses = dict(
        db.execute(
            "SELECT status, count(*) FROM erp_outbox WHERE kind = 'damage_claim' GROUP BY 1"
        ).fetchall()
    )
    new_damaged = len(recompute(more, "FAC-001", DAY, "UTC", ZONES)["damaged_ids"])
    assert statuses == {"acknowledged": claims, "pending": new_damaged}
    (report_status,) = db.execute(
        "SELECT status FROM erp_outbox WHERE kind = 'discrepancy_report'"
    ).fetchone()
    assert (
        report_status == "pending"
    )  # the figures changed, so the report is due again (an update in the ERP)


def test_pending_messages_the_new_figures_no_longer_produce_are_withdrawn(db, seeder, set_facility):
    set_facility("FAC-001", "UTC")
    seeder.facility_day("FAC-001", DAY, "UTC", packages=12)
    first = refresh_facility_day(db, "FAC-001", DAY)
    db.execute("UPDATE quality_assessments SET condition = 'ok'")

    again = refresh_facility_day(db, "FAC-001", DAY)

    assert again.row["damaged_packages"] == 0
    assert again.outbox_withdrawn == first.claims_enqueued
    assert db.execute("SELECT count(*) FROM erp_outbox WHERE kind = 'damage_claim'").fetchone() == (0,)


def test_unknown_facility_is_a_clear_error(db):
    with pytest.raises(FacilityNotFound, match=r"FAC-404.*WV_FACILITIES"):
        refresh_facility_day(db, "FAC-404", DAY)
