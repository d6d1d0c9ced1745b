"""The SQL behind ``facility_daily_analytics``: one facility-day computed and replaced in one transaction.

A facility-day is the facility's local calendar day (``facilities.timezone``), i.e. the
half-open UTC window ``[local midnight, next local midnight)``; every query carries that window
as a ``timestamptz`` range on the partition column, so PostgreSQL prunes to the one or two daily
partitions (or TimescaleDB chunks) that hold it. The decisions of the window are staged once in
a temporary table and every figure is computed from it in SQL; hourly throughput comes from the
``facility_hourly_detections`` continuous aggregate when TimescaleDB maintains it and its UTC
hours line up with the facility's local hours (otherwise from the staged decisions).

:func:`refresh_facility_day` deletes the partition's rollup rows and inserts the new ones, and in
the same transaction enqueues the ERP messages derived from them (one damage claim per damaged
package, one discrepancy report per facility-day) in ``erp_outbox``: rollup and outbox are
committed together or not at all (transactional outbox).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from psycopg.rows import dict_row

ROLLUP_COLUMNS = (
    "facility_id, day, timezone, window_start, window_end, decisions, packages_seen, expected_packages, "
    "throughput_by_hour, damaged_packages, damage_rate, misplaced_packages, misplacement_rate, "
    "anomalies_total, anomalies, latency_p50_ms, latency_p99_ms, fallback_decisions, fallback_rate, "
    "unassessed_decisions, discrepancy_total, source, computed_at"
)

HourlySource = Literal["auto", "aggregate", "raw"]


class FacilityNotFound(LookupError):
    """The facility is a configured partition but has no row in ``facilities``."""


@dataclass(frozen=True)
class FacilityDay:
    """A facility's local day and the UTC window it covers."""

    facility_id: str
    day: date
    timezone: str
    start: datetime
    end: datetime
    expected_packages: int

    @property
    def hours_align(self) -> bool:
        """True when UTC hour buckets map onto whole local hours (no :30/:45 offsets that day)."""
        return all(
            (t.utcoffset() or timedelta()) % timedelta(hours=1) == timedelta() for t in (self.start, self.end)
        )


@dataclass(frozen=True)
class RefreshResult:
    """What one refresh wrote: the rollup row, its zone rows and the outbox changes."""

    row: dict[str, Any]
    zones: list[dict[str, Any]]
    claims_enqueued: int
    reports_enqueued: int
    outbox_withdrawn: int


def local_window(day: date, timezone: str) -> tuple[datetime, datetime]:
    """``[local midnight of day, local midnight of the next day)`` as aware datetimes."""
    try:
        tz = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown IANA time zone {timezone!r}") from exc
    return datetime.combine(day, time(), tz), datetime.combine(day + timedelta(days=1), time(), tz)


def facility_day(conn: psycopg.Connection, facility_id: str, day: date) -> FacilityDay:
    """The facility's time zone and expected volume, and the UTC window of its local ``day``."""
    row = conn.execute(
        "SELECT timezone, expected_daily_packages FROM facilities WHERE facility_id = %s", (facility_id,)
    ).fetchone()
    if row is None:
        raise FacilityNotFound(
            f"facility {facility_id!r} is configured (WV_FACILITIES) but has no row in `facilities`; "
            "run `wv db upgrade` (it seeds configured facilities) or insert it"
        )
    start, end = local_window(day, row[0])
    return FacilityDay(facility_id, day, row[0], start, end, int(row[1]))


def continuous_aggregate_present(conn: psycopg.Connection) -> bool:
    """Whether ``facility_hourly_detections`` is a TimescaleDB continuous aggregate.

    On plain PostgreSQL the same name is a view over the raw table, which is no cheaper than the
    staged decisions (its bucket predicate cannot prune partitions), so it is only worth reading
    when TimescaleDB has materialised it.
    """
    row = conn.execute(
        """
        SELECT to_regclass('timescaledb_information.continuous_aggregates') IS NOT NULL
        """
    ).fetchone()
    if not row or not row[0]:
        return False
    row = conn.execute(
        "SELECT 1 FROM timescaledb_information.continuous_aggregates "
        "WHERE view_schema = current_schema() AND view_name = 'facility_hourly_detections'"
    ).fetchone()
    return row is not None


_STAGE = """
CREATE TEMP TABLE wv_day_decisions ON COMMIT DROP AS
SELECT pd.event_id, pd.event_time, pd.camera_id, pd.package_id, pd.sku, pd.zone, pd.expected_zone,
       pd.fallback, pd.end_to_end_ms, pd.model_version, qa.condition, qa.condition_confidence
FROM package_detections pd
LEFT JOIN quality_assessments qa
       ON qa.event_time = pd.event_time AND qa.event_id = pd.event_id
      -- Redundant for correctness, decisive for speed: the facility's assessments come from the
      -- (facility_id, event_time) index of the day's partition instead of a scan of all of it.
      AND qa.facility_id = %(facility)s AND qa.event_time >= %(start)s AND qa.event_time < %(end)s
WHERE pd.facility_id = %(facility)s AND pd.kind = 'decision'
  AND pd.event_time >= %(start)s AND pd.event_time < %(end)s
"""

_HOURS_RAW = """
SELECT extract(hour FROM event_time AT TIME ZONE %(tz)s)::int AS hour, count(*)::int AS n
FROM wv_day_decisions GROUP BY 1
"""

_HOURS_AGGREGATE = """
SELECT extract(hour FROM bucket AT TIME ZONE %(tz)s)::int AS hour, sum(decisions)::int AS n
FROM facility_hourly_detections
WHERE facility_id = %(facility)s AND bucket >= %(start)s AND bucket < %(end)s
GROUP BY 1
"""

_INSERT_ZONES = """
WITH seen AS (
    SELECT zone, count(DISTINCT package_id)::int AS n FROM wv_day_decisions WHERE zone <> '' GROUP BY zone
), expected AS (
    SELECT zone_id, expected_daily_packages FROM zones WHERE facility_id = %(facility)s
)
INSERT INTO facility_zone_daily_analytics (facility_id, day, zone_id, expected_packages, seen_packages)
SELECT %(facility)s, %(day)s, coalesce(e.zone_id, s.zone), coalesce(e.expected_daily_packages, 0),
       coalesce(s.n, 0)
FROM expected e FULL JOIN seen s ON s.zone = e.zone_id
RETURNING zone_id, expected_packages, seen_packages, discrepancy
"""

_INSERT_DAY = f"""
WITH totals AS (
    SELECT count(*)::int AS decisions,
           count(DISTINCT package_id)::int AS packages_seen,
           count(DISTINCT package_id) FILTER (WHERE condition <> 'ok')::int AS damaged,
           count(DISTINCT package_id) FILTER (WHERE expected_zone <> '' AND zone <> expected_zone)::int
               AS misplaced,
           count(*) FILTER (WHERE fallback)::int AS fallback_decisions,
           count(*) FILTER (WHERE condition IS NULL)::int AS unassessed,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY end_to_end_ms) AS p50,
           percentile_cont(0.99) WITHIN GROUP (ORDER BY end_to_end_ms) AS p99
    FROM wv_day_decisions
), per_kind AS (
    SELECT kind, sum(n)::int AS n, jsonb_object_agg(severity, n) AS by_severity
    FROM (
        SELECT kind, severity, count(*)::int AS n FROM anomaly_flags
        WHERE facility_id = %(facility)s AND flagged_at >= %(start)s AND flagged_at < %(end)s
        GROUP BY kind, severity
    ) s
    GROUP BY kind
), anomalies AS (
    SELECT coalesce(sum(n), 0)::int AS total, coalesce(jsonb_object_agg(kind, by_severity), '{{}}') AS by_kind
    FROM per_kind
)
INSERT INTO facility_daily_analytics ({ROLLUP_COLUMNS})
SELECT %(facility)s, %(day)s, %(tz)s, %(start)s, %(end)s, t.decisions, t.packages_seen, %(expected)s,
       %(hours)s,
       t.damaged, CASE WHEN t.packages_seen > 0 THEN t.damaged::float8 / t.packages_seen ELSE 0 END,
       t.misplaced, CASE WHEN t.packages_seen > 0 THEN t.misplaced::float8 / t.packages_seen ELSE 0 END,
       a.total, a.by_kind, t.p50, t.p99, t.fallback_decisions,
       CASE WHEN t.decisions > 0 THEN t.fallback_decisions::float8 / t.decisions ELSE 0 END,
       t.unassessed, 0, %(source)s, now()
FROM totals t, anomalies a
RETURNING {ROLLUP_COLUMNS}
"""

# Damage claims: one per damaged package, keyed by (facility, package) so a package damaged on two
# days is claimed once. A re-run of the same day refreshes a claim whose facts changed (the ERP
# adapters upsert by key, so a re-send updates the record) and leaves unchanged ones alone.
_ENQUEUE_CLAIMS = """
WITH first_damage AS (
    SELECT DISTINCT ON (package_id) *
    FROM wv_day_decisions WHERE condition <> 'ok'
    ORDER BY package_id, event_time, event_id
), claims AS (
    SELECT 'DC-' || left(encode(sha256(convert_to(%(facility)s || '|' || package_id, 'UTF8')), 'hex'), 32)
               AS key, *
    FROM first_damage
)
INSERT INTO erp_outbox AS o (idempotency_key, kind, facility_id, business_date, payload)
SELECT key, 'damage_claim', %(facility)s, %(day)s,
       jsonb_build_object(
           'claim_id', key, 'facility_id', %(facility)s::text, 'business_date', %(day)s::date,
           'package_id', package_id, 'sku', sku, 'condition', condition,
           'condition_confidence', round(condition_confidence::numeric, 4),
           'detected_at', event_time, 'camera_id', camera_id, 'zone', zone,
           'event_id', event_id, 'model_version', model_version)
FROM claims
ON CONFLICT (idempotency_key) DO UPDATE
    SET payload = excluded.payload, status = 'pending', attempts = 0, next_attempt_at = now(),
        last_error = NULL
    WHERE o.business_date = excluded.business_date AND o.payload IS DISTINCT FROM excluded.payload
RETURNING idempotency_key
"""

_ENQUEUE_REPORT = """
WITH lines AS (
    SELECT zone_id, expected_packages, seen_packages, discrepancy
    FROM facility_zone_daily_analytics WHERE facility_id = %(facility)s AND day = %(day)s
), report AS (
    SELECT 'DR-' || left(encode(sha256(convert_to(%(facility)s || '|' || %(day)s::text, 'UTF8')), 'hex'), 32)
               AS key,
           jsonb_agg(jsonb_build_object('zone_id', zone_id, 'expected', expected_packages,
                                        'seen', seen_packages, 'discrepancy', discrepancy) ORDER BY zone_id)
               AS lines,
           sum(expected_packages)::int AS expected, sum(seen_packages)::int AS seen
    FROM lines
    HAVING bool_or(discrepancy <> 0)
)
INSERT INTO erp_outbox AS o (idempotency_key, kind, facility_id, business_date, payload)
SELECT key, 'discrepancy_report', %(facility)s, %(day)s,
       jsonb_build_object('report_id', key, 'facility_id', %(facility)s::text, 'business_date', %(day)s::date,
                          'timezone', %(tz)s::text, 'expected_packages', expected, 'seen_packages', seen,
                          'lines', lines)
FROM report
ON CONFLICT (idempotency_key) DO UPDATE
    SET payload = excluded.payload, status = 'pending', attempts = 0, next_attempt_at = now(),
        last_error = NULL
    WHERE o.payload IS DISTINCT FROM excluded.payload
RETURNING idempotency_key
"""

# Messages of this facility-day that were never delivered and that the new figures no longer
# produce are withdrawn; delivered ones stay (the ERP already has them).
_WITHDRAW_STALE = """
DELETE FROM erp_outbox
WHERE facility_id = %(facility)s AND business_date = %(day)s
  AND status IN ('pending', 'failed', 'parked')
  AND NOT (idempotency_key = ANY(%(keep)s))
"""

_CURRENT_KEYS = """
SELECT 'DC-' || left(encode(sha256(convert_to(%(facility)s || '|' || package_id, 'UTF8')), 'hex'), 32)
FROM wv_day_decisions WHERE condition <> 'ok'
UNION
SELECT 'DR-' || left(encode(sha256(convert_to(%(facility)s || '|' || %(day)s::text, 'UTF8')), 'hex'), 32)
FROM facility_zone_daily_analytics
WHERE facility_id = %(facility)s AND day = %(day)s AND discrepancy <> 0
"""


def refresh_facility_day(
    conn: psycopg.Connection, facility_id: str, day: date, *, hourly: HourlySource = "auto"
) -> RefreshResult:
    """Recompute one facility-day and replace its rollup rows and pending ERP messages atomically.

    ``hourly`` picks where throughput by hour comes from: ``auto`` reads the continuous aggregate
    when TimescaleDB has one and the facility's offset is whole hours that day, else the raw
    decisions; ``aggregate`` and ``raw`` force one (the aggregate is a plain view without
    TimescaleDB: correct, just not faster).

    Concurrent refreshes of the same facility-day serialise on an advisory lock, so two runs of
    one partition cannot interleave their delete and insert.
    """
    with conn.transaction():
        conn.execute("SET LOCAL TimeZone = 'UTC'")
        # A facility-day's sorts (distinct packages, percentiles) fit in 32 MB at 50,000 decisions;
        # the server default (4 MB) spills them to temporary files. Local to this transaction.
        conn.execute("SET LOCAL work_mem = '32MB'")
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
            (f"facility_daily_analytics|{facility_id}|{day.isoformat()}",),
        )
        fd = facility_day(conn, facility_id, day)
        params: dict[str, Any] = {
            "facility": facility_id,
            "day": day,
            "tz": fd.timezone,
            "start": fd.start,
            "end": fd.end,
            "expected": fd.expected_packages,
        }
        conn.execute(
            "DELETE FROM facility_daily_analytics WHERE facility_id = %s AND day = %s", (facility_id, day)
        )
        conn.execute(_STAGE, params)
        from_aggregate = hourly == "aggregate" or (
            hourly == "auto" and fd.hours_align and continuous_aggregate_present(conn)
        )
        hours = [0] * 24
        for hour, n in conn.execute(_HOURS_AGGREGATE if from_aggregate else _HOURS_RAW, params).fetchall():
            hours[hour] += n
        params |= {"hours": hours, "source": "hourly_aggregate" if from_aggregate else "raw"}
        # The day row must exist before its zone rows (foreign key): insert it with a zero
        # discrepancy total, then the zones, then fill the total in.
        with conn.cursor(row_factory=dict_row) as cur:
            cur.execute(_INSERT_DAY, params)
            row = cur.fetchone()
            cur.execute(_INSERT_ZONES, params)
            zones = sorted(cur.fetchall(), key=lambda z: z["zone_id"])
        if row is None:
            raise RuntimeError("the rollup insert returned no row")
        row["discrepancy_total"] = sum(abs(z["discrepancy"]) for z in zones)
        conn.execute(
            "UPDATE facility_daily_analytics SET discrepancy_total = %s WHERE facility_id = %s AND day = %s",
            (row["discrepancy_total"], facility_id, day),
        )
        keep = [k for (k,) in conn.execute(_CURRENT_KEYS, params).fetchall()]
        withdrawn = conn.execute(_WITHDRAW_STALE, params | {"keep": keep}).rowcount
        claims = conn.execute(_ENQUEUE_CLAIMS, params).rowcount
        reports = conn.execute(_ENQUEUE_REPORT, params).rowcount
        # ON COMMIT DROP only fires at the outermost commit; inside a caller's transaction this
        # block is a savepoint, so drop the staging table here for the next facility-day.
        conn.execute("DROP TABLE wv_day_decisions")
    return RefreshResult(row, zones, claims, reports, withdrawn)
