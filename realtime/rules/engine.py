"""The pure rule engine: ``evaluate(rules, facts, since, now)`` → the flags that became due.

An evaluation covers the interval ``(since, now]``: a threshold flag is due at its decision's
time, a rate flag at its window's end, a dwell flag when the stay passed its limit, a lost
flag when the wait for the next zone ran out. Flag ids and times depend only on their cause,
so overlapping or repeated evaluations produce the same flags, which the writer stores once.
"""

from __future__ import annotations

import operator
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

from contract.events import anomaly_flag, anomaly_id_for
from contract.proto import warehouse_vision_pb2 as pb
from realtime.rules.config import DwellRule, LostRule, Predicate, RateRule, Rule, RuleSet, ThresholdRule
from realtime.rules.facts import Decision, Facts, Sighting, Zone
from realtime.windows.model import Counts

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
    "in": lambda a, b: a in b,
    "not_in": lambda a, b: a not in b,
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _flag(rule: Rule, cause: tuple[object, ...], flagged_at: datetime, **fields: Any) -> pb.AnomalyFlag:
    source = f"rule:{rule.name}"
    return anomaly_flag(
        anomaly_id=anomaly_id_for(source, *cause),
        kind=rule.kind,
        source=source,
        flagged_at=flagged_at,
        **fields,
    )


def _due(when: datetime, since: datetime, now: datetime) -> bool:
    return since < when <= now


# --- threshold ------------------------------------------------------------------------------
def _matches(p: Predicate, d: Decision) -> bool:
    value = getattr(d, p.field)
    if value is None:
        return False
    return _OPS[p.op](value, p.value)


def threshold(rule: ThresholdRule, facts: Facts, since: datetime, now: datetime) -> Iterator[pb.AnomalyFlag]:
    for d in facts.decisions:
        if (
            rule.applies_to(d.facility_id)
            and _due(d.event_time, since, now)
            and all(_matches(p, d) for p in rule.when)
        ):
            yield _flag(
                rule,
                (d.event_id,),
                d.event_time,
                severity=rule.severity,
                facility_id=d.facility_id,
                camera_id=d.camera_id,
                package_id=d.package_id,
                zone=d.zone,
                event_id=d.event_id,
                evidence={p.field: getattr(d, p.field) for p in rule.when},
            )


# --- rate -----------------------------------------------------------------------------------
def window_start(when: datetime, minutes: int) -> datetime:
    """Start of the tumbling window (aligned to the epoch, hence to midnight UTC) holding ``when``."""
    size = minutes * 60
    return _EPOCH + timedelta(seconds=int((when - _EPOCH).total_seconds()) // size * size)


def baseline_key(rule: RateRule, facility_id: str, conveyor: str, day: date) -> tuple[str, str, str, str]:
    """Baselines cover the ``baseline_days`` whole days before ``day``; one lookup per day."""
    return rule.name, facility_id, conveyor, day.isoformat()


def rate_windows(rule: RateRule, since: datetime, now: datetime) -> list[datetime]:
    """Starts of the windows that end in ``(since, now]``."""
    size = timedelta(minutes=rule.window_minutes)
    first = window_start(since, rule.window_minutes)
    starts = []
    start = first
    while start + size <= now:
        if start + size > since:
            starts.append(start)
        start += size
    return starts


def rate(rule: RateRule, facts: Facts, since: datetime, now: datetime) -> Iterator[pb.AnomalyFlag]:
    """A rule window's counts are the sum of its minutes' (rule windows are whole minutes)."""
    size = timedelta(minutes=rule.window_minutes)
    for start in rate_windows(rule, since, now):
        groups: dict[tuple[str, str], Counts] = defaultdict(Counts)
        for m in facts.conveyor_minutes:
            if (
                m.group_by == rule.group_by
                and start <= m.minute < start + size
                and rule.applies_to(m.facility_id)
            ):
                groups[(m.facility_id, m.conveyor)] += m.counts
        for (facility, conveyor), window in sorted(groups.items()):
            if window.packages < rule.min_packages:
                continue
            baseline = facts.baselines.get(baseline_key(rule, facility, conveyor, start.date()), Counts())
            reference = max(baseline.rate(rule.metric), rule.min_baseline_rate)
            observed = window.rate(rule.metric)
            if observed <= rule.factor * reference:
                continue
            critical = rule.critical_factor is not None and observed > rule.critical_factor * reference
            yield _flag(
                rule,
                (facility, conveyor, start.isoformat()),
                start + size,
                severity="critical" if critical else rule.severity,
                score=observed / reference,
                facility_id=facility,
                zone=conveyor if rule.group_by == "zone" else "",
                camera_id=conveyor if rule.group_by == "camera_id" else "",
                evidence={
                    "metric": rule.metric,
                    rule.group_by: conveyor,
                    "window_start": start.isoformat(),
                    "window_end": (start + size).isoformat(),
                    "packages": window.packages,
                    "rate": round(observed, 6),
                    "baseline_rate": round(baseline.rate(rule.metric), 6),
                    "baseline_packages": baseline.packages,
                    "reference_rate": round(reference, 6),
                    "factor": rule.factor,
                },
            )


# --- dwell and lost -------------------------------------------------------------------------
def _by_package(sightings: Iterable[Sighting]) -> dict[tuple[str, str], list[Sighting]]:
    tracks: dict[tuple[str, str], list[Sighting]] = defaultdict(list)
    for s in sightings:
        tracks[(s.facility_id, s.package_id)].append(s)
    for track in tracks.values():
        track.sort(key=lambda s: s.time)
    return tracks


def _zone(facts: Facts, facility_id: str, zone_id: str) -> Zone | None:
    return facts.zones.get((facility_id, zone_id))


def dwell(rule: DwellRule, facts: Facts, since: datetime, now: datetime) -> Iterator[pb.AnomalyFlag]:
    for (facility, package), track in sorted(_by_package(facts.sightings).items()):
        if not rule.applies_to(facility):
            continue
        current = track[-1].zone
        zone = _zone(facts, facility, current)
        watched = (
            current in rule.zones if rule.zones is not None else (zone is not None and zone.kind == "holding")
        )
        limit_s = rule.max_dwell_s or (zone.max_dwell_s if zone else None)
        if not watched or not limit_s:
            continue
        stay = []  # the trailing run of sightings in the current zone
        for s in reversed(track):
            if s.zone != current:
                break
            stay.append(s)
        entered = min(s.first_seen or s.time for s in stay)
        last_seen = track[-1].time
        overdue_at = entered + timedelta(seconds=limit_s)
        if last_seen >= overdue_at and _due(overdue_at, since, now):
            yield _flag(
                rule,
                (facility, package, current, entered.isoformat()),
                overdue_at,
                severity=rule.severity,
                score=(last_seen - entered).total_seconds() / limit_s,
                facility_id=facility,
                package_id=package,
                zone=current,
                evidence={
                    "zone": current,
                    "entered_at": entered.isoformat(),
                    "last_seen": last_seen.isoformat(),
                    "dwell_s": round((last_seen - entered).total_seconds(), 3),
                    "limit_s": limit_s,
                },
            )


def lost(rule: LostRule, facts: Facts, since: datetime, now: datetime) -> Iterator[pb.AnomalyFlag]:
    within = timedelta(seconds=rule.within_s)
    for (facility, package), track in sorted(_by_package(facts.sightings).items()):
        if not rule.applies_to(facility):
            continue
        # the last time the package left each zone before moving on (or its last sighting)
        for i, s in enumerate(track):
            if i + 1 < len(track) and track[i + 1].zone == s.zone:
                continue  # not the last sighting of this stay
            if rule.from_zones is not None and s.zone not in rule.from_zones:
                continue
            zone = _zone(facts, facility, s.zone)
            expected = rule.next_zone or (zone.next_zone_id if zone else None)
            if not expected:
                continue
            deadline = s.time + within
            # seen in time at the next zone, or anywhere else (a diversion, not a loss)
            arrived = any(s.time < later.time <= deadline for later in track[i + 1 :])
            if arrived or not _due(deadline, since, now):
                continue
            yield _flag(
                rule,
                (facility, package, s.zone, s.time.isoformat()),
                deadline,
                severity=rule.severity,
                facility_id=facility,
                package_id=package,
                zone=s.zone,
                evidence={
                    "last_zone": s.zone,
                    "expected_zone": expected,
                    "last_seen": s.time.isoformat(),
                    "within_s": rule.within_s,
                },
            )


_ENGINES: dict[type, Callable[[Any, Facts, datetime, datetime], Iterator[pb.AnomalyFlag]]] = {
    ThresholdRule: threshold,
    RateRule: rate,
    DwellRule: dwell,
    LostRule: lost,
}


def evaluate(rules: RuleSet, facts: Facts, since: datetime, now: datetime) -> list[pb.AnomalyFlag]:
    """Every flag due in ``(since, now]``, rule by rule in file order."""
    return [flag for rule in rules.rules for flag in _ENGINES[type(rule)](rule, facts, since, now)]
