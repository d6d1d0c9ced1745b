"""Facility analytics at the reference network's daily volume (issue 7, item 6).

    python -m bench.analytics [--quick]

A scratch database gets 47 facilities (time zones from UTC-8 to UTC+9, a :30 offset included)
and one local day of decisions per facility, generated server-side with ``generate_series``:
50,000 for the first facility and 2.3 M in all (``--quick``: 5 facilities, 5,000 and 25,000),
each with its quality assessment (2 % damaged), 1 % misplaced, 1 % fallback, 1 anomaly flag per
100 decisions and 5 zones with expected volumes. Then, on this machine:

- the SQL refresh of the 50,000-decision facility-day (:func:`refresh_facility_day`: rollup,
  zones and ERP outbox in one transaction), median of 3 runs, and its Dagster materialization
  (``facility_daily_analytics`` with its three checks and chart, in process);
- all 47 facility-days, one after another (what the nightly runs add up to) and two at a time
  (the ``analytics_db`` pool's default limit);
- peak memory: the client's resident set, and what PostgreSQL spilled to temporary files.

Baseline, same run: reading the facility-day's decisions once (``count(*)`` over the same
partition-pruned range), the least any computation over them must pay.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

from assets.facility_analytics.sql import local_window, refresh_facility_day
from bench._report import write_report
from bench._services import scratch_database
from wv.settings import PlatformSettings

TIMEZONES = (
    "UTC", "America/Los_Angeles", "America/Chicago", "America/New_York", "Europe/London",
    "Europe/Berlin", "Europe/Warsaw", "Asia/Kolkata", "Asia/Singapore", "Asia/Tokyo",
)  # fmt: skip

_FACILITIES = """
UPDATE facilities f SET timezone = z.tz, expected_daily_packages = z.per
FROM (SELECT facility_id, (%(zones)s::text[])[1 + (row_number() OVER (ORDER BY facility_id) - 1)
             %% cardinality(%(zones)s::text[])] AS tz,
             CASE WHEN facility_id = %(first)s THEN %(first_n)s ELSE %(per)s END AS per
      FROM facilities) z
WHERE z.facility_id = f.facility_id
"""
_ZONES = """
INSERT INTO zones (facility_id, zone_id, expected_daily_packages)
SELECT facility_id, 'Z' || z, expected_daily_packages / 5 FROM facilities, generate_series(0, 4) AS z
"""
# One local day per facility: decision g of n at local midnight + g/n of 24 h.
_DECISIONS = """
INSERT INTO package_detections (event_id, event_time, kind, facility_id, camera_id, track_id, package_id, sku,
    x1, y1, x2, y2, detection_confidence, zone, expected_zone, model_version, engine, precision, fallback,
    frames_observed, first_seen, decode_ms, preprocess_ms, queue_ms, infer_ms, track_ms, decide_ms, publish_ms,
    end_to_end_ms)
SELECT f.facility_id || '-' || g, (%(day)s::timestamp AT TIME ZONE f.timezone) + g * (interval '86399 s' / f.n),
    'decision', f.facility_id, 'cam-' || (g %% 16), 't' || g, f.facility_id || '-PKG-' || g, 'SKU-' || (g %% 1000),
    10, 10, 60, 60, 0.9, 'Z' || (g %% 5), CASE WHEN g %% 100 = 7 THEN 'Z9' ELSE 'Z' || (g %% 5) END,
    'vit-s16-int8-v1', 'onnxruntime', 'int8', g %% 100 = 3, 12,
    (%(day)s::timestamp AT TIME ZONE f.timezone) + g * (interval '86399 s' / f.n) - interval '1 s',
    2, 3, 4, 30, 0.5, 0.3, 1, 40 + (g * 7919 %% 1600) / 10.0
FROM (SELECT facility_id, timezone, expected_daily_packages AS n FROM facilities) f, generate_series(0, f.n - 1) AS g
"""
_ASSESSMENTS = """
INSERT INTO quality_assessments (event_id, event_time, facility_id, package_id, condition,
    p_ok, p_crushed, p_torn, p_wet, p_open, condition_confidence, fallback, model_version)
SELECT event_id, event_time, facility_id, package_id,
    CASE WHEN right(event_id, 2)::int %% 50 = 11 THEN (ARRAY['crushed', 'torn', 'wet', 'open'])[1 + length(event_id) %% 4]
         ELSE 'ok' END,
    0.96, 0.01, 0.01, 0.01, 0.01, 0.96, fallback, model_version
FROM package_detections WHERE kind = 'decision'
"""
_FLAGS = """
INSERT INTO anomaly_flags (anomaly_id, flagged_at, facility_id, package_id, zone, event_id, kind, severity)
SELECT 'an-' || event_id, event_time, facility_id, package_id, zone, event_id,
    (ARRAY['damaged', 'misplaced', 'dwell'])[1 + length(event_id) %% 3],
    (ARRAY['info', 'warning', 'critical'])[1 + right(event_id, 1)::int %% 3]
FROM package_detections WHERE kind = 'decision' AND right(event_id, 2) = '42'
"""


def fill(url: str, first: str, first_n: int, per: int, day: date) -> dict[str, float]:
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(_FACILITIES, {"zones": list(TIMEZONES), "first": first, "first_n": first_n, "per": per})
        conn.execute(_ZONES)
        decisions = conn.execute(_DECISIONS, {"day": day}).rowcount
        conn.execute(_ASSESSMENTS, {})
        conn.execute(_FLAGS, {})
        conn.execute("ANALYZE")
    return {"decisions": decisions, "fill_s": time.perf_counter() - started}


def one(conn: psycopg.Connection, query: str, params: tuple[object, ...] = ()) -> tuple[Any, ...]:
    """The single row of ``query``."""
    row = conn.execute(query, params).fetchone()
    if row is None:
        raise RuntimeError(f"no row from {query!r}")
    return tuple(row)


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def temp_bytes(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT temp_bytes FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    return int(row[0]) if row else 0


def refresh(url: str, facility: str, day: date) -> None:
    with psycopg.connect(url) as conn:
        refresh_facility_day(conn, facility, day)


def read_baseline(url: str, facility: str, day: date) -> float:
    with psycopg.connect(url) as conn:
        (tz,) = one(conn, "SELECT timezone FROM facilities WHERE facility_id = %s", (facility,))
        start, end = local_window(day, tz)
        query = (
            "SELECT count(*), sum(end_to_end_ms) FROM package_detections "
            "WHERE facility_id = %s AND kind = 'decision' AND event_time >= %s AND event_time < %s"
        )
        conn.execute(query, (facility, start, end))  # warm the cache like the refresh runs do
        return timed(lambda: conn.execute(query, (facility, start, end)).fetchone())


def materialize_seconds(url: str, facility: str, day: date) -> float:
    """The Dagster asset in process: refresh + checks (GX) + chart + metadata; after one warm-up run."""
    import dagster as dg

    from assets.common.resources import DatabaseResource
    from assets.common.settings import PipelineSettings
    from assets.facility_analytics.assets import facility_daily_analytics

    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    key = dg.MultiPartitionKey({"date": day.isoformat(), "facility": facility})

    def run() -> None:
        result = dg.materialize(
            [facility_daily_analytics],
            partition_key=key,
            resources={
                "database": DatabaseResource(url=url),
                "settings": PipelineSettings.load(database_url=url),
            },
            run_config=quiet,
        )
        if not result.success:
            raise RuntimeError("materialization failed")

    run()
    return timed(run)


def backend_peak_rss_mb(conn: psycopg.Connection) -> float | None:
    """Peak resident memory (VmHWM) of this connection's server process, when it runs on this machine."""
    (pid,) = one(conn, "SELECT pg_backend_pid()")
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            lines = status.read().splitlines()
    except OSError:
        return None
    peak = [line.split()[1] for line in lines if line.startswith("VmHWM:")]
    return int(peak[0]) / 1024 if peak else None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="5 facilities, 25,000 decisions (under a minute)"
    )
    args = parser.parse_args()
    n_facilities, first_n, total = (5, 5_000, 25_000) if args.quick else (47, 50_000, 2_300_000)
    per = (total - first_n) // (n_facilities - 1)
    facilities = [f"FAC-{i:03d}" for i in range(1, n_facilities + 1)]
    settings = PlatformSettings.load(facilities=facilities)
    day = (datetime.now(UTC) - timedelta(days=2)).date()
    with scratch_database(settings, "wv_bench_analytics") as url:
        filled = fill(url, facilities[0], first_n, per, day)
        baseline_s = statistics.median(read_baseline(url, facilities[0], day) for _ in range(3))
        one_s = statistics.median(timed(lambda: refresh(url, facilities[0], day)) for _ in range(3))
        one_dagster_s = materialize_seconds(url, facilities[0], day)
        spilled_before = temp_bytes(url)
        with psycopg.connect(url) as conn:
            tracemalloc.start()
            all_seq_s = timed(lambda: [refresh_facility_day(conn, f, day) for f in facilities])
            client_peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
            server_peak_mb = backend_peak_rss_mb(conn)
        spilled = temp_bytes(url) - spilled_before
        with ThreadPoolExecutor(2) as pool:
            all_par_s = timed(lambda: list(pool.map(lambda f: refresh(url, f, day), facilities)))
        with psycopg.connect(url) as conn:
            rows, claims = one(
                conn,
                "SELECT (SELECT count(*) FROM facility_daily_analytics), "
                "(SELECT count(*) FROM erp_outbox WHERE kind = 'damage_claim')",
            )
            (work_mem,) = one(conn, "SHOW work_mem")
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert rows == n_facilities, f"expected {n_facilities} rollup rows, got {rows}"
    decisions = int(filled["decisions"])
    metrics = {
        "decisions": decisions,
        "facilities": n_facilities,
        "fill_s": round(filled["fill_s"], 2),
        "one_facility_day_decisions": first_n,
        "one_facility_day_refresh_s": round(one_s, 3),
        "one_facility_day_materialize_s": round(one_dagster_s, 3),
        "all_facility_days_sequential_s": round(all_seq_s, 2),
        "all_facility_days_2_workers_s": round(all_par_s, 2),
        "decisions_per_s_sequential": round(decisions / all_seq_s),
        "damage_claims_enqueued": int(claims),
        "client_peak_alloc_mb_during_refreshes": round(client_peak_mb, 2),
        "client_peak_rss_mb": round(peak_rss_mb, 1),
        "server_backend_peak_rss_mb": round(server_peak_mb, 1) if server_peak_mb is not None else -1,
        "server_temp_spill_mb": round(spilled / 2**20, 1),
    }
    baseline = {"one_facility_day_read_s": round(baseline_s, 4)}
    rows_out = [
        {"case": f"1 facility-day, {first_n:,} decisions: SQL refresh (median of 3)", "value": f"{one_s:.3f} s",
         "vs baseline": f"{one_s / baseline_s:.1f}× the bare read ({baseline_s * 1000:.1f} ms)"},
        {"case": "1 facility-day: Dagster materialization (checks, chart)", "value": f"{one_dagster_s:.2f} s",
         "vs baseline": ""},
        {"case": f"all {n_facilities} facility-days, {decisions:,} decisions, sequential",
         "value": f"{all_seq_s:.1f} s", "vs baseline": f"{decisions / all_seq_s:,.0f} decisions/s"},
        {"case": f"all {n_facilities} facility-days, 2 workers (pool limit)", "value": f"{all_par_s:.1f} s",
         "vs baseline": f"{all_seq_s / all_par_s:.2f}× sequential"},
        {"case": f"peak memory over the {n_facilities} refreshes: server backend RSS / temp spill / client",
         "value": f"{server_peak_mb or float('nan'):.0f} MB / {spilled / 2**20:.1f} MB / {client_peak_mb:.2f} MB",
         "vs baseline": f"server work_mem {work_mem}, 32MB inside the refresh; client process RSS {peak_rss_mb:.0f} MB (Dagster, GX loaded)"},
        {"case": "data generation (server-side generate_series)", "value": f"{filled['fill_s']:.1f} s",
         "vs baseline": f"{int(claims):,} damage claims enqueued"},
    ]  # fmt: skip
    write_report("analytics", metrics, baseline, rows_out)


if __name__ == "__main__":
    main()
