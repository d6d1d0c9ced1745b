"""Facts for one evaluation, read from the database with parameterised queries.

Only what the rules need is read: decisions since the earliest window or deadline under
evaluation, sightings in the zones the dwell and lost rules watch, and per-conveyor baselines
(cached per day: they cover whole previous days, so they change once a day).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import psycopg
from psycopg import sql

from realtime.rules.config import DwellRule, LostRule, RateRule, RuleSet
from realtime.rules.engine import baseline_key, rate_windows
from realtime.rules.facts import Counts, Decision, Facts, Sighting, Zone

_DECISIONS = """
    SELECT d.event_id, d.facility_id, d.camera_id, d.package_id, d.zone, d.expected_zone, q.condition,
           q.condition_confidence, d.detection_confidence, d.fallback, d.end_to_end_ms, d.event_time
    FROM package_detections d JOIN quality_assessments q USING (event_time, event_id)
    WHERE d.kind = 'decision' AND d.event_time >= %s AND d.event_time < %s
"""
_SIGHTINGS = """
    SELECT facility_id, package_id, zone, event_time, first_seen FROM package_detections
    WHERE event_time >= %s AND event_time < %s AND zone = ANY(%s) AND package_id <> ''
"""
_BASELINE = """
    SELECT d.facility_id, d.{conveyor}, count(*),
           count(*) FILTER (WHERE q.condition <> 'ok'),
           count(*) FILTER (WHERE d.expected_zone <> '' AND d.zone <> d.expected_zone),
           count(*) FILTER (WHERE d.fallback)
    FROM package_detections d JOIN quality_assessments q USING (event_time, event_id)
    WHERE d.kind = 'decision' AND d.event_time >= %s AND d.event_time < %s
    GROUP BY 1, 2
"""


class FactLoader:
    """Loads :class:`Facts` for a rule set; keeps baselines between evaluations."""

    def __init__(self, rules: RuleSet) -> None:
        self.rules = rules
        self._baselines: dict[tuple[str, str, int, date], dict[tuple[str, str], Counts]] = {}

    def earliest(self, since: datetime) -> datetime:
        """Oldest event time any rule needs to judge what became due after ``since``."""
        earliest = since
        for rule in self.rules.rules:
            if isinstance(rule, RateRule):
                earliest = min(earliest, since - timedelta(minutes=rule.window_minutes))
            elif isinstance(rule, LostRule):
                earliest = min(earliest, since - timedelta(seconds=rule.within_s))
        return earliest

    def load(self, conn: psycopg.Connection, since: datetime, now: datetime) -> Facts:
        zones = {
            (f, z): Zone(f, z, kind, nxt, float(dwell) if dwell else None)
            for f, z, kind, nxt, dwell in conn.execute(
                "SELECT facility_id, zone_id, kind, next_zone_id, max_dwell_seconds FROM zones"
            )
        }
        start = self.earliest(since)
        decisions = tuple(Decision(*row) for row in conn.execute(_DECISIONS, (start, now)))
        watched = self._watched_zones(zones)
        sightings: tuple[Sighting, ...] = ()
        if watched:
            lookback = start - timedelta(hours=1)  # room for the stay before a dwell limit ran out
            sightings = tuple(
                Sighting(*row) for row in conn.execute(_SIGHTINGS, (lookback, now, sorted(watched)))
            )
        return Facts(decisions, sightings, zones, self._baseline_facts(conn, since, now))

    def _watched_zones(self, zones: dict[tuple[str, str], Zone]) -> set[str]:
        watched: set[str] = set()
        for rule in self.rules.rules:
            if isinstance(rule, DwellRule):
                watched |= set(rule.zones or (z.zone_id for z in zones.values() if z.kind == "holding"))
            elif isinstance(rule, LostRule):
                sources = [
                    z for z in zones.values() if rule.from_zones is None or z.zone_id in rule.from_zones
                ]
                watched |= {z.zone_id for z in sources if rule.next_zone or z.next_zone_id}
                watched |= (
                    {rule.next_zone}
                    if rule.next_zone
                    else {z.next_zone_id for z in sources if z.next_zone_id}
                )
        return watched

    def _baseline_facts(
        self, conn: psycopg.Connection, since: datetime, now: datetime
    ) -> dict[tuple[str, str, str, str], Counts]:
        out: dict[tuple[str, str, str, str], Counts] = {}
        for rule in self.rules.rules:
            if not isinstance(rule, RateRule):
                continue
            for day in sorted({start.date() for start in rate_windows(rule, since, now)}):
                for (facility, conveyor), counts in self._baseline(conn, rule, day).items():
                    out[baseline_key(rule, facility, conveyor, day)] = counts
        return out

    def _baseline(self, conn: psycopg.Connection, rule: RateRule, day: date) -> dict[tuple[str, str], Counts]:
        key = (rule.name, rule.group_by, rule.baseline_days, day)
        if key not in self._baselines:
            end = datetime.combine(day, datetime.min.time()).replace(tzinfo=UTC)
            query = sql.SQL(_BASELINE).format(conveyor=sql.Identifier(rule.group_by))
            self._baselines[key] = {
                (facility, conveyor): Counts(n, damaged, misplaced, fallback)
                for facility, conveyor, n, damaged, misplaced, fallback in conn.execute(
                    query, (end - timedelta(days=rule.baseline_days), end)
                )
            }
            for stale in [k for k in self._baselines if k[3] < day - timedelta(days=1)]:
                del self._baselines[stale]
        return self._baselines[key]
