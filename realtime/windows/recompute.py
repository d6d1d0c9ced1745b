"""Windows computed from the database: the reference the Redis figures must match, and the
repair after Redis lost data (fan-out entries or windows were lost, the stored rows were not).

:class:`WindowRepair` is what the window aggregator calls on its own when it detects such a loss
(see :mod:`realtime.windows.aggregator`); ``wv realtime windows --rebuild-minutes N`` forces one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta

import psycopg
import redis

from realtime.windows.model import CONVEYOR_GROUPS, NO_LATENCY, Counts, Window, window_keys

_DECISIONS = """
    SELECT d.event_id, d.event_time, q.condition <> 'ok' AS damaged,
           d.expected_zone <> '' AND d.zone <> d.expected_zone AS misplaced,
           d.fallback, d.end_to_end_ms::float8 AS e2e, d.zone, d.camera_id
    FROM package_detections d
    JOIN quality_assessments q USING (event_time, event_id)
    WHERE d.kind = 'decision' AND d.facility_id = %s AND d.event_time >= %s AND d.event_time < %s
"""
_FLAGS = """
    SELECT anomaly_id, flagged_at, kind FROM anomaly_flags
    WHERE facility_id = %s AND flagged_at >= %s AND flagged_at < %s
"""
_WINDOWS = """
    WITH decisions AS ({decisions})
    SELECT date_trunc('minute', event_time) AS minute, count(*) AS packages,
           count(*) FILTER (WHERE damaged) AS damaged, count(*) FILTER (WHERE misplaced) AS misplaced,
           count(*) FILTER (WHERE fallback) AS fallback,
           percentile_disc(0.99) WITHIN GROUP (ORDER BY e2e) AS p99
    FROM decisions GROUP BY 1
"""
_CONVEYORS = """
    WITH decisions AS ({decisions})
    SELECT date_trunc('minute', event_time) AS minute, {group}, count(*),
           count(*) FILTER (WHERE damaged), count(*) FILTER (WHERE misplaced),
           count(*) FILTER (WHERE fallback)
    FROM decisions GROUP BY 1, 2
"""
_ANOMALIES = """
    SELECT date_trunc('minute', flagged_at) AS minute, kind, count(*) FROM anomaly_flags
    WHERE facility_id = %s AND flagged_at >= %s AND flagged_at < %s GROUP BY 1, 2
"""


def windows_from_database(
    conn: psycopg.Connection, facility_id: str, start: datetime, end: datetime
) -> list[Window]:
    """The facility's windows in ``[start, end)`` as SQL computes them, oldest first."""
    params = (facility_id, start, end)
    found: dict[datetime, dict] = defaultdict(dict)
    for minute, packages, damaged, misplaced, fallback, p99 in conn.execute(
        _WINDOWS.format(decisions=_DECISIONS), params
    ):
        found[minute].update(counts=Counts(packages, damaged, misplaced, fallback), p99=p99)
    for minute, kind, n in conn.execute(_ANOMALIES, params):
        found[minute].setdefault("anomalies", {})[kind] = n
    for group in CONVEYOR_GROUPS:  # a fixed name: safe to format into the query
        for minute, conveyor, *counts in conn.execute(
            _CONVEYORS.format(decisions=_DECISIONS, group=group), params
        ):
            found[minute].setdefault("conveyors", {})[(group, conveyor)] = Counts(*counts)
    return [
        Window(
            facility_id=facility_id,
            minute=minute.astimezone(UTC),
            counts=f.get("counts", Counts()),
            p99_e2e_ms=f.get("p99"),
            anomalies=f.get("anomalies", {}),
            conveyors=dict(sorted(f.get("conveyors", {}).items())),
        )
        for minute, f in sorted(found.items())
    ]


def rebuild(
    client: redis.Redis,
    conn: psycopg.Connection,
    facility_id: str,
    start: datetime,
    end: datetime,
    *,
    ttl_s: int,
) -> int:
    """Rewrite the facility's windows in ``[start, end)`` from the database; returns windows written.

    Each window is replaced atomically (MULTI/EXEC) with the same per-id records the aggregator
    keeps, so entries still arriving afterwards are recognised as already counted.
    """
    minutes: dict[int, dict] = defaultdict(lambda: {"lat": {}, "anom": set(), "counts": defaultdict(int)})
    params = (facility_id, start, end)
    for event_id, event_time, damaged, misplaced, fallback, e2e, zone, camera in conn.execute(
        _DECISIONS, params
    ):
        w = minutes[int(event_time.timestamp()) // 60 * 60]
        w["lat"][event_id] = NO_LATENCY if e2e is None else e2e
        for counter, hit in (("packages", True), ("damaged", damaged), ("misplaced", misplaced),
                             ("fallback", fallback)):  # fmt: skip
            if hit:  # the fields the aggregator's script increments (realtime.windows.model)
                for field in (counter, f"zone:{counter}:{zone}", f"camera_id:{counter}:{camera}"):
                    w["counts"][field] += 1
    for anomaly_id, flagged_at, kind in conn.execute(_FLAGS, params):
        w = minutes[int(flagged_at.timestamp()) // 60 * 60]
        w["anom"].add(anomaly_id)
        w["counts"][f"anomalies:{kind}"] += 1
    for minute, w in minutes.items():
        counters, latencies, anomalies = window_keys(facility_id, minute)
        with client.pipeline(transaction=True) as pipe:
            pipe.delete(counters, latencies, anomalies)
            pipe.hset(counters, mapping=dict(w["counts"]))
            if w["lat"]:
                pipe.zadd(latencies, w["lat"])
            if w["anom"]:
                pipe.sadd(anomalies, *w["anom"])
            for key in (counters, latencies, anomalies):
                pipe.expire(key, ttl_s)
            pipe.execute()
    return len(minutes)


class WindowRepair:
    """Rebuilds windows from the database for the aggregator: recent ones, or one facility's span.

    ``connection`` yields a database connection (e.g. ``Connector.connection``) to the home shard,
    whose ``facilities`` table lists every facility; ``facility_connection`` yields one to the shard
    holding a facility's events (default: ``connection``, one database). ``recent_minutes`` is how
    far back :meth:`recent` rebuilds every registered facility.
    """

    def __init__(
        self,
        connection: Callable[[], AbstractContextManager[psycopg.Connection]],
        *,
        ttl_s: int,
        recent_minutes: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        facility_connection: Callable[[str], AbstractContextManager[psycopg.Connection]] | None = None,
    ) -> None:
        self._connection = connection
        self._facility_connection = facility_connection or (lambda _facility: connection())
        self.ttl_s = ttl_s
        self.recent_minutes = recent_minutes
        self._clock = clock

    def _facilities(self) -> list[str]:
        with self._connection() as conn:
            return [
                str(f) for (f,) in conn.execute("SELECT facility_id FROM facilities ORDER BY facility_id")
            ]

    def recent(self, client: redis.Redis) -> int:
        """Rebuild every facility's windows of the last ``recent_minutes`` (and a few ahead: clock skew)."""
        now = self._clock()
        start, end = now - timedelta(minutes=self.recent_minutes), now + timedelta(minutes=5)
        return sum(self.span(client, f, start, end) for f in self._facilities())

    def span(self, client: redis.Redis, facility_id: str, start: datetime, end: datetime) -> int:
        with self._facility_connection(facility_id) as conn:
            return rebuild(client, conn, facility_id, start, end, ttl_s=self.ttl_s)
