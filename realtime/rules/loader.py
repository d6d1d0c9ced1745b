"""Facts for one evaluation: the rate rules' current counts from the per-minute windows on Redis,
the rest from the database with parameterised queries.

Only what the rules need is read: the conveyors' per-minute counts of the windows under
evaluation (:func:`~realtime.windows.model.read_windows`, two Redis round trips per facility),
decisions due in the interval (threshold rules), sightings in the zones the dwell and lost rules
watch, and per-conveyor baselines. Those three stay in the database because the windows do not
hold them: single decisions and sightings are not kept there, and a baseline covers the
``baseline_days`` whole days before, far beyond the windows' ``WV_WINDOW_TTL_S`` (6 h); baselines
are cached per day (they change once a day).

The windows are read only while they are current (:func:`~realtime.windows.aggregator.
windows_are_current`): after Redis lost data, until the window aggregator rebuilt them from the
database, :meth:`FactLoader.rate_facts` answers None and the runner defers the rate rules.
With facility shards every runner reads the windows of its own shard's facilities only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import psycopg
import redis
from psycopg import sql

from foundation.settings import ConfigError
from realtime.rules.config import DwellRule, LostRule, RateRule, RuleSet, ThresholdRule
from realtime.rules.engine import baseline_key, rate_windows, window_start
from realtime.rules.facts import ConveyorMinute, Decision, Facts, Sighting, Zone
from realtime.windows.aggregator import windows_are_current
from realtime.windows.model import Counts, read_windows

log = logging.getLogger(__name__)

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


def check_windows_hold(rules: RuleSet, *, ttl_s: int, rebuild_minutes: int) -> None:
    """Refuse rate rules whose window the per-minute windows cannot hold whole: longer than the
    windows are kept, or than what is rebuilt after a Redis loss (judged on a part, it would miss)."""
    for rule in rules.rules:
        if not isinstance(rule, RateRule):
            continue
        if rule.window_minutes * 60 > ttl_s:
            raise ConfigError(
                f"WV_RULES_FILE: rule {rule.name}: window_minutes {rule.window_minutes} is longer than the "
                f"windows are kept (WV_WINDOW_TTL_S={ttl_s}); raise WV_WINDOW_TTL_S or shorten the window"
            )
        if rule.window_minutes > rebuild_minutes:
            raise ConfigError(
                f"WV_RULES_FILE: rule {rule.name}: window_minutes {rule.window_minutes} is longer than what "
                f"is rebuilt after a Redis loss (WV_WINDOW_REBUILD_MINUTES={rebuild_minutes}); raise "
                "WV_WINDOW_REBUILD_MINUTES or shorten the window"
            )


class FactLoader:
    """Loads :class:`Facts` for a rule set; keeps baselines between evaluations.

    ``windows`` is the Redis holding the per-minute windows; ``owns`` says whether a facility's
    rules run here (with facility shards: whether it lives on this runner's shard).
    """

    def __init__(
        self, rules: RuleSet, windows: redis.Redis, *, owns: Callable[[str], bool] = lambda _f: True
    ) -> None:
        self.rules = rules
        self._windows = windows
        self._owns = owns
        self._baselines: dict[tuple[str, str, int, date], dict[tuple[str, str], Counts]] = {}

    def earliest(self, since: datetime) -> datetime:
        """Oldest sighting a lost rule needs to judge what became due after ``since``."""
        earliest = since
        for rule in self.rules.rules:
            if isinstance(rule, LostRule):
                earliest = min(earliest, since - timedelta(seconds=rule.within_s))
        return earliest

    def load(self, conn: psycopg.Connection, since: datetime, now: datetime) -> Facts:
        """The database's facts: decisions, sightings and zones (no rate rule reads them)."""
        zones = {
            (f, z): Zone(f, z, kind, nxt, float(dwell) if dwell else None)
            for f, z, kind, nxt, dwell in conn.execute(
                "SELECT facility_id, zone_id, kind, next_zone_id, max_dwell_seconds FROM zones"
            )
        }
        decisions: tuple[Decision, ...] = ()
        if any(isinstance(rule, ThresholdRule) for rule in self.rules.rules):
            decisions = tuple(Decision(*row) for row in conn.execute(_DECISIONS, (since, now)))
        watched = self._watched_zones(zones)
        sightings: tuple[Sighting, ...] = ()
        if watched:
            lookback = self.earliest(since) - timedelta(hours=1)  # room for the stay before a dwell limit
            sightings = tuple(
                Sighting(*row) for row in conn.execute(_SIGHTINGS, (lookback, now, sorted(watched)))
            )
        return Facts(decisions=decisions, sightings=sightings, zones=zones)

    def rate_facts(self, conn: psycopg.Connection, since: datetime, now: datetime) -> Facts | None:
        """The rate rules' facts: conveyor minutes from the windows, baselines from the database;
        None while the windows cannot be trusted (being rebuilt after a Redis loss, or Redis down)."""
        rules = [rule for rule in self.rules.rules if isinstance(rule, RateRule)]
        if not rules:
            return Facts()
        start = min(window_start(since, rule.window_minutes) for rule in rules)
        try:
            if not windows_are_current(self._windows):
                log.debug("windows not rebuilt since Redis lost data (or never built)")
                return None
            facilities = [
                str(f)
                for (f,) in conn.execute("SELECT facility_id FROM facilities ORDER BY 1")
                if self._owns(f)
            ]
            minutes = tuple(
                ConveyorMinute(facility, group, conveyor, window.minute, counts)
                for facility in facilities
                for window in read_windows(self._windows, facility, start, now)
                for (group, conveyor), counts in window.conveyors.items()
            )
        except (redis.RedisError, OSError) as exc:
            log.debug("windows unreadable: %s", exc)
            return None
        return Facts(conveyor_minutes=minutes, baselines=self._baseline_facts(conn, since, now))

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
