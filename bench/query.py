"""``QueryPackageHistory`` latency with millions of detection rows (issue 5, item 8).

    python -m bench.query [--quick]

A scratch database is filled server-side (``generate_series``) with one day of data: 10 M
``package_detections`` rows (1 M with ``--quick``) for packages of 4 detections and 1 decision
each, their quality assessments and package rows, and a flag on 1 % of the packages. Then
random packages' timelines are fetched through the real gRPC service (token-authenticated
client, plaintext on localhost). The baseline is the same query function called directly on a
database connection, in the same run, so the table shows what gRPC and conversion add.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from datetime import UTC, datetime, timedelta

import psycopg

from bench._report import write_report
from bench._services import scratch_database
from contract.proto import warehouse_vision_pb2 as pb
from realtime.service import client
from realtime.service.server import ServiceConfig, start_server
from realtime.storage.queries import package_history
from wv.settings import PlatformSettings

EVENTS_PER_PACKAGE = 5
_DETECTIONS = """
INSERT INTO package_detections (event_id, event_time, kind, facility_id, camera_id, track_id, package_id, sku,
    x1, y1, x2, y2, detection_confidence, zone, expected_zone, model_version, engine, precision,
    frames_observed, first_seen, decode_ms, preprocess_ms, queue_ms, infer_ms, track_ms, decide_ms,
    publish_ms, end_to_end_ms)
SELECT 'ev-' || g, %(day)s + (g / 5) * %(step)s + (g %% 5) * interval '100 ms',
    CASE WHEN g %% 5 = 4 THEN 'decision' ELSE 'detection' END,
    'FAC-00' || (1 + (g / 5) %% 3), 'cam-' || ((g / 5) %% 16), 't' || (g / 5), 'PKG-' || (g / 5),
    'SKU-' || ((g / 5) %% 1000), 10, 10, 60, 60, 0.9, 'sorter', 'sorter', 'vit-s16-int8-v1', 'onnxruntime',
    'int8', 1, %(day)s + (g / 5) * %(step)s, 2, 3, 5, 30, 0.5, 0.3, 1, 80 + (g %% 97)
FROM generate_series(%(lo)s, %(hi)s - 1) AS g
"""
_ASSESSMENTS = """
INSERT INTO quality_assessments (event_id, event_time, facility_id, package_id, condition,
    p_ok, p_crushed, p_torn, p_wet, p_open, condition_confidence, model_version)
SELECT 'ev-' || (p * 5 + 4), %(day)s + p * %(step)s + interval '400 ms', 'FAC-00' || (1 + p %% 3), 'PKG-' || p,
    CASE WHEN p %% 50 = 0 THEN 'crushed' ELSE 'ok' END, 0.96, 0.01, 0.01, 0.01, 0.01, 0.96, 'vit-s16-int8-v1'
FROM generate_series(%(lo)s, %(hi)s - 1) AS p
"""
_PACKAGES = """
INSERT INTO packages (package_id, facility_id, sku, expected_zone, last_zone, last_condition, first_seen,
    last_seen, decisions)
SELECT 'PKG-' || p, 'FAC-00' || (1 + p %% 3), 'SKU-' || (p %% 1000), 'sorter', 'sorter', 'ok',
    %(day)s + p * %(step)s, %(day)s + p * %(step)s + interval '400 ms', 1
FROM generate_series(%(lo)s, %(hi)s - 1) AS p
"""
_FLAGS = """
INSERT INTO anomaly_flags (anomaly_id, flagged_at, facility_id, package_id, zone, event_id, kind, severity)
SELECT 'an-' || p, %(day)s + p * %(step)s + interval '400 ms', 'FAC-00' || (1 + p %% 3), 'PKG-' || p, 'sorter',
    'ev-' || (p * 5 + 4), 'damaged', 'warning'
FROM generate_series(%(lo)s, %(hi)s - 1) AS p WHERE p %% 100 = 0
"""


def fill(url: str, rows: int, chunk: int = 1_000_000) -> float:
    """Insert ``rows`` detection rows (and their packages) spread over today; returns seconds."""
    packages = rows // EVENTS_PER_PACKAGE
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    step = timedelta(days=1) / packages
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        for lo in range(0, rows, chunk):
            conn.execute(_DETECTIONS, {"day": day, "step": step, "lo": lo, "hi": min(rows, lo + chunk)})
        for statement in (_ASSESSMENTS, _PACKAGES, _FLAGS):
            for lo in range(0, packages, chunk):
                conn.execute(statement, {"day": day, "step": step, "lo": lo, "hi": min(packages, lo + chunk)})
        conn.execute("ANALYZE")
    return time.perf_counter() - started


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 M rows and 300 queries")
    parser.add_argument("--rows", type=int, help="detection rows (default 10 M, 1 M with --quick)")
    parser.add_argument("--queries", type=int, help="timed queries (default 1000, 300 with --quick)")
    args = parser.parse_args(argv)
    rows = args.rows or (1_000_000 if args.quick else 10_000_000)
    queries = args.queries or (300 if args.quick else 1000)
    settings: PlatformSettings = PlatformSettings.load()
    token = "bench-token"
    rng = random.Random(3)
    with scratch_database(settings, "wv_bench_query") as url:
        fill_s = fill(url, rows)
        ids = [f"PKG-{rng.randrange(rows // EVENTS_PER_PACKAGE)}" for _ in range(queries)]
        server = start_server(
            ServiceConfig(address="127.0.0.1:0", token=token, database_url=url, max_workers=4)
        )
        try:
            stub = client.stub(client.channel(f"127.0.0.1:{server.port}", token))
            for package in ids[:50]:  # warm-up: connections, caches, plans
                stub.QueryPackageHistory(pb.PackageID(package_id=package), timeout=5)
            grpc_times, entries = [], 0
            for package in ids:
                started = time.perf_counter()
                timeline = stub.QueryPackageHistory(pb.PackageID(package_id=package), timeout=5)
                grpc_times.append(time.perf_counter() - started)
                entries += len(timeline.entries)
        finally:
            server.stop(grace_s=1)
        sql_times = []
        with psycopg.connect(url, autocommit=True) as conn:
            for package in ids:
                started = time.perf_counter()
                package_history(conn, package)
                sql_times.append(time.perf_counter() - started)
    grpc_p50, grpc_p99 = percentiles(grpc_times)
    sql_p50, sql_p99 = percentiles(sql_times)
    metrics = {
        "detection_rows": rows,
        "queries": queries,
        "entries_per_timeline": round(entries / queries, 2),
        "grpc_p50_ms": round(grpc_p50, 2),
        "grpc_p99_ms": round(grpc_p99, 2),
        "fill_seconds": round(fill_s, 1),
    }
    baseline = {"direct_query_p50_ms": round(sql_p50, 2), "direct_query_p99_ms": round(sql_p99, 2)}
    table = [
        {
            "path": "QueryPackageHistory over gRPC",
            "rows": f"{rows:,}",
            "p50": f"{grpc_p50:.2f} ms",
            "p99": f"{grpc_p99:.2f} ms",
        },
        {
            "path": "package_history() on a connection (baseline)",
            "rows": f"{rows:,}",
            "p50": f"{sql_p50:.2f} ms",
            "p99": f"{sql_p99:.2f} ms",
        },
    ]
    write_report("query", metrics, baseline, table)


if __name__ == "__main__":
    main()
