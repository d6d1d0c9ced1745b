"""The pure rule engine, rule by rule and all together on a synthetic day (no I/O)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from contract.proto import warehouse_vision_pb2 as pb
from foundation.settings import ConfigError
from realtime.rules.config import RateRule, RuleSet, load_rules, parse_rules
from realtime.rules.engine import baseline_key, evaluate
from realtime.rules.facts import ConveyorMinute, Decision, Facts, Sighting, Zone
from realtime.rules.loader import check_windows_hold
from realtime.windows.model import CONVEYOR_GROUPS, Counts

DAY = datetime(2026, 3, 2, tzinfo=UTC)
F = "FAC-001"
ZONES = {
    (F, "inbound"): Zone(F, "inbound", "lane", next_zone_id="sorter"),
    (F, "sorter"): Zone(F, "sorter", "sorter", next_zone_id="outbound"),
    (F, "outbound"): Zone(F, "outbound", "dock"),
    (F, "holding"): Zone(F, "holding", "holding", max_dwell_s=1800),
}


def decision(at: datetime, package: str = "PKG-1", **fields) -> Decision:
    values: dict[str, Any] = {
        "event_id": f"ev-{package}-{at.isoformat()}",
        "facility_id": F,
        "camera_id": "cam-01",
        "package_id": package,
        "zone": "sorter",
        "expected_zone": "sorter",
        "condition": "ok",
        "condition_confidence": 0.95,
        "detection_confidence": 0.9,
        "fallback": False,
        "end_to_end_ms": 80.0,
        "event_time": at,
    }
    values.update(fields)
    return Decision(**values)


def conveyor_minutes(decisions: list[Decision]) -> tuple[ConveyorMinute, ...]:
    """What the windows hold of ``decisions``: their counts per conveyor and UTC minute."""
    tallied: dict[tuple[str, str, str, datetime], Counts] = {}
    for d in decisions:
        minute = d.event_time.replace(second=0, microsecond=0)
        one = Counts(1, int(d.damaged), int(d.misplaced), int(d.fallback))
        for group in CONVEYOR_GROUPS:
            key = (d.facility_id, group, getattr(d, group), minute)
            tallied[key] = tallied.get(key, Counts()) + one
    return tuple(ConveyorMinute(f, g, c, m, counts) for (f, g, c, m), counts in tallied.items())


def test_threshold_flags_each_matching_decision_once_it_is_due():
    ruleset = parse_rules(
        """
        rules:
          - name: uncertain_damage
            type: threshold
            kind: uncertain_damage
            when:
              - {field: condition, op: not_in, value: [ok]}
              - {field: condition_confidence, op: "<", value: 0.6}
        """
    )
    t = DAY + timedelta(hours=9)
    facts = Facts(
        decisions=(
            decision(t, "P1", condition="torn", condition_confidence=0.55),
            decision(t, "P2", condition="torn", condition_confidence=0.9),  # confident: fine
            decision(t, "P3", condition="ok", condition_confidence=0.4),  # not damaged
            decision(t + timedelta(hours=2), "P4", condition="wet", condition_confidence=0.5),  # not due yet
        )
    )
    flags = evaluate(ruleset, facts, t - timedelta(minutes=1), t + timedelta(minutes=1))
    assert [(f.package_id, f.kind, f.source) for f in flags] == [
        ("P1", "uncertain_damage", "rule:uncertain_damage")
    ]
    assert json.loads(flags[0].evidence_json) == {"condition": "torn", "condition_confidence": 0.55}
    later = evaluate(ruleset, facts, t - timedelta(minutes=1), t + timedelta(hours=3))
    assert [f.package_id for f in later] == ["P1", "P4"]
    assert later[0].anomaly_id == flags[0].anomaly_id  # re-evaluation: same flag


def _rate_rule() -> RateRule:
    rule = parse_rules(
        """
        rules:
          - {name: spike, type: rate, kind: damage_rate, metric: damage_rate, group_by: zone,
             window_minutes: 15, factor: 3, critical_factor: 8, min_packages: 20, min_baseline_rate: 0.01}
        """
    ).rules[0]
    assert isinstance(rule, RateRule)
    return rule


def test_rate_flags_a_conveyor_far_above_its_own_baseline():
    rule = _rate_rule()
    start = DAY + timedelta(hours=10)
    decisions = []
    for zone, damaged, total in (("sorter", 4, 40), ("inbound", 4, 40), ("outbound", 5, 10)):
        for i in range(total):
            at = start + timedelta(seconds=20 * i)
            decisions.append(
                decision(at, f"{zone}-{i}", zone=zone, condition="torn" if i < damaged else "ok")
            )
    baselines = {
        baseline_key(rule, F, "sorter", DAY.date()): Counts(packages=10_000, damaged=200),  # 2 %: 10 % is 5x
        baseline_key(rule, F, "inbound", DAY.date()): Counts(packages=10_000, damaged=500),  # 5 %: 10 % is 2x
    }  # outbound: 50 % damaged, but only 10 packages in the window
    facts = Facts(conveyor_minutes=conveyor_minutes(decisions), baselines=baselines)
    only = RuleSet(rules=(rule,))
    flags = evaluate(only, facts, start, start + timedelta(minutes=15))
    assert [(f.zone, f.severity) for f in flags] == [("sorter", pb.SEVERITY_WARNING)]
    evidence = json.loads(flags[0].evidence_json)
    assert evidence["rate"] == 0.1 and evidence["baseline_rate"] == 0.02 and evidence["packages"] == 40
    assert flags[0].flagged_at.ToDatetime(UTC) == start + timedelta(minutes=15)
    # no history at all: the floor (1 %) is the reference, so 10 % is critical (> 8x)
    fresh = Facts(conveyor_minutes=conveyor_minutes([d for d in decisions if d.zone == "sorter"]))
    assert [f.severity for f in evaluate(only, fresh, start, start + timedelta(minutes=15))] == [
        pb.SEVERITY_CRITICAL
    ]
    # the window is not over yet: nothing is due
    assert evaluate(only, facts, start, start + timedelta(minutes=14)) == []


def test_dwell_flags_packages_held_past_the_zone_limit():
    ruleset = parse_rules("rules: [{name: holding_dwell, type: dwell, kind: dwell}]")
    t = DAY + timedelta(hours=8)
    sightings = []
    for package, minutes in (("long", 45), ("short", 20)):
        sightings.append(Sighting(F, package, "inbound", t - timedelta(minutes=5)))
        sightings += [
            Sighting(F, package, "holding", t + timedelta(minutes=m)) for m in range(0, minutes + 1, 5)
        ]
    # left the holding zone after 40 minutes: its stay is over, but it was overdue while there
    sightings += [Sighting(F, "left", "holding", t + timedelta(minutes=m)) for m in range(0, 41, 5)]
    sightings.append(Sighting(F, "left", "outbound", t + timedelta(minutes=41)))
    # the track's first_seen tells when a long stay began even if older sightings are gone
    sightings.append(
        Sighting(F, "old", "holding", t + timedelta(minutes=10), first_seen=t - timedelta(hours=1))
    )
    facts = Facts(sightings=tuple(sightings), zones=ZONES)
    flags = evaluate(ruleset, facts, t - timedelta(hours=2), t + timedelta(hours=1))
    assert sorted(f.package_id for f in flags) == ["long", "old"]
    long = next(f for f in flags if f.package_id == "long")
    assert long.flagged_at.ToDatetime(UTC) == t + timedelta(minutes=30)
    assert json.loads(long.evidence_json)["limit_s"] == 1800


def test_lost_flags_packages_that_never_reach_the_next_zone_in_time():
    ruleset = parse_rules("rules: [{name: lost, type: lost, kind: lost, within_s: 600}]")
    t = DAY + timedelta(hours=12)
    sightings = [
        Sighting(F, "arrives", "inbound", t),
        Sighting(F, "arrives", "sorter", t + timedelta(minutes=4)),
        Sighting(F, "arrives", "outbound", t + timedelta(minutes=7)),
        Sighting(F, "vanishes", "inbound", t),
        Sighting(F, "vanishes", "inbound", t + timedelta(minutes=1)),
        Sighting(F, "late", "inbound", t),
        Sighting(F, "late", "sorter", t + timedelta(minutes=15)),
        Sighting(F, "recent", "inbound", t + timedelta(minutes=25)),  # its 10 minutes are not over
    ]
    facts = Facts(sightings=tuple(sightings), zones=ZONES)
    flags = evaluate(ruleset, facts, t, t + timedelta(minutes=30))
    assert sorted((f.package_id, f.zone) for f in flags) == [
        ("late", "inbound"),
        ("late", "sorter"),
        ("vanishes", "inbound"),
    ]
    vanished = next(f for f in flags if f.package_id == "vanishes")
    assert vanished.flagged_at.ToDatetime(UTC) == t + timedelta(minutes=11)  # last seen + 10 min
    assert json.loads(vanished.evidence_json)["expected_zone"] == "sorter"


def test_all_rules_together_on_a_synthetic_day_raise_exactly_the_planted_anomalies():
    rng = random.Random(7)
    ruleset = load_rules()  # the packaged default rules
    decisions, sightings = [], []
    planted: dict[str, set[str]] = {
        "uncertain_damage": set(),
        "dwell": set(),
        "lost": set(),
        "slow_decision": set(),
    }
    spike = DAY + timedelta(hours=14)  # one 15-minute window of heavy damage on the sorter
    for i in range(2400):  # a package every 36 s over the day
        at = DAY + timedelta(seconds=36 * i + rng.uniform(0, 5))
        package = f"P{i:05d}"
        in_spike = spike <= at + timedelta(minutes=6) < spike + timedelta(minutes=15)
        condition = "crushed" if (in_spike and i % 2 == 0) else "ok"
        confidence = 0.95
        if i in (100, 900):
            condition, confidence = "torn", 0.5
            planted["uncertain_damage"].add(package)
        slow = i == 1500
        if slow:
            planted["slow_decision"].add(package)
        route = [("inbound", 0), ("sorter", 6), ("outbound", 9)]
        if i in (300, 1700):
            route = [("inbound", 0)]  # never reaches the sorter
            planted["lost"].add(package)
        if i in (500, 2000):
            route = [("inbound", 0), ("sorter", 6), ("holding", 8)]
            planted["dwell"].add(package)
        for zone, minute in route:
            seen = at + timedelta(minutes=minute)
            sightings.append(Sighting(F, package, zone, seen))
            if zone == "holding":
                sightings += [
                    Sighting(F, package, zone, seen + timedelta(minutes=m)) for m in range(5, 50, 5)
                ]
            if zone == "sorter":
                decisions.append(
                    decision(
                        seen,
                        package,
                        zone="sorter",
                        condition=condition,
                        condition_confidence=confidence,
                        end_to_end_ms=2500.0 if slow else 90.0,
                    )
                )
    # the week before: 2 % damage on the sorter (one uncertain torn parcel in 25 stays below 3x)
    baselines = {
        baseline_key(rule, F, "sorter", DAY.date()): Counts(packages=16_800, damaged=336)
        for rule in ruleset.rules
        if isinstance(rule, RateRule)
    }
    facts = Facts(
        decisions=tuple(decisions),
        conveyor_minutes=conveyor_minutes(decisions),
        sightings=tuple(sightings),
        zones=ZONES,
        baselines=baselines,
    )
    flags = evaluate(ruleset, facts, DAY, DAY + timedelta(days=1, hours=2))
    raised: dict[str, set[str]] = {}
    for f in flags:
        raised.setdefault(f.kind, set()).add(f.package_id or f.zone)
    assert raised["uncertain_damage"] == planted["uncertain_damage"]
    assert raised["slow_decision"] == planted["slow_decision"]
    assert raised["lost"] == planted["lost"]
    assert raised["dwell"] == planted["dwell"]
    rate_flags = [f for f in flags if f.kind == "damage_rate"]
    assert [(f.zone, f.flagged_at.ToDatetime(UTC)) for f in rate_flags] == [
        ("sorter", spike + timedelta(minutes=15))
    ]
    assert rate_flags[0].severity == pb.SEVERITY_CRITICAL  # ~50 % against 2 %
    assert len({f.anomaly_id for f in flags}) == len(flags)
    again = evaluate(ruleset, facts, DAY, DAY + timedelta(days=1, hours=2))
    assert [f.anomaly_id for f in again] == [f.anomaly_id for f in flags]


def test_a_bad_rule_file_names_the_variable_and_the_problem():
    with pytest.raises(ConfigError, match="WV_RULES_FILE") as bad:
        parse_rules("rules: [{name: x, type: rate, kind: k, metric: damage_rate, window_minutes: 7}]")
    assert "window_minutes" in str(bad.value)
    with pytest.raises(ConfigError, match="unique"):
        parse_rules(
            "rules: [{name: a, type: lost, kind: lost, within_s: 5}, "
            "{name: a, type: lost, kind: lost, within_s: 6}]"
        )


def test_a_rate_window_the_per_minute_windows_cannot_hold_whole_is_refused():
    """Rate rules read the windows: a window longer than they are kept, or than a rebuild after a
    Redis loss restores, would be judged on a part of its packages."""
    hour = parse_rules(
        "rules: [{name: hourly, type: rate, kind: k, metric: damage_rate, window_minutes: 60}]"
    )
    check_windows_hold(hour, ttl_s=6 * 3600, rebuild_minutes=60)
    with pytest.raises(ConfigError, match="WV_WINDOW_TTL_S=1800"):
        check_windows_hold(hour, ttl_s=1800, rebuild_minutes=60)
    with pytest.raises(ConfigError, match=r"rule hourly.*WV_WINDOW_REBUILD_MINUTES=30"):
        check_windows_hold(hour, ttl_s=6 * 3600, rebuild_minutes=30)
    check_windows_hold(
        load_rules(), ttl_s=6 * 3600, rebuild_minutes=60
    )  # the packaged rules fit the defaults
