"""Sizing arithmetic for the reference network (README, Deploying to Kubernetes).

    .venv/bin/python deploy/sizing.py              # the arithmetic from the recorded benchmarks
    .venv/bin/python deploy/sizing.py --measure    # + bytes per package measured on the local PostgreSQL

The per-event costs come from docs/benchmarks.md (ingest, edge, outbox); ``--measure`` fills a scratch
database (``bench.query.fill``: packages of 4 detections and 1 decision, their assessments, package
rows and a flag on 1 %) and reads the on-disk size of every table and index, so the storage figures
are measured, not assumed. The fill leaves `embedding` empty; a 64-d embedding on each decision adds
about 64 x 4 + 24 = 280 bytes per package (computed, not measured).
"""

from __future__ import annotations

import argparse
import math

# The reference network (issue 19).
FACILITIES = 47
CAMERAS = 180
PACKAGES_PER_DAY = 2_300_000
PEAK_PACKAGES_S = 280
SHARDS = 8  # the reference deployment's PostgreSQL instances
RETENTION_DAYS = 90  # WV_RETENTION_DAYS default

# docs/benchmarks.md.
EVENTS_PER_PACKAGE = 5  # 4 sampled detections + 1 decision (the ingest workload)
EVENT_BYTES = 445  # a decision event with its 64-d embedding (outbox benchmark)
INGEST_EVENTS_S = (25_248, 55_425)  # one worker, slow / fast 2-vCPU VM
INGEST_CLIENT_US = (14.6, 33.9)  # worker CPU per event
INGEST_PG_US = (10.5, 21.9)  # PostgreSQL CPU per event
INGEST_RSS_MB = (82, 190)  # idle, peak while draining
GPU_FRAMES_S = {1: 30.0, 2: 57.4, 3: 78.1, 8: 133.9}  # H100, torch fp16, one edge process, 30 FPS cameras
CPU_FRAMES_S = 32.0  # 2 vCPUs, ONNX Runtime INT8, one edge process
CAMERA_FPS = 30
OUTBOX_TTL_H = 48


def arithmetic(bytes_per_package: float | None = None) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    add = rows.append
    avg = PACKAGES_PER_DAY / 86_400
    peak_events = PEAK_PACKAGES_S * EVENTS_PER_PACKAGE
    add(
        (
            "packages/s: average, peak",
            f"{avg:.1f}, {PEAK_PACKAGES_S} (peak = {PEAK_PACKAGES_S / avg:.1f}x average)",
        )
    )
    add(("events/s at peak (x5 per package)", f"{peak_events:,}"))
    add(("events/day", f"{PACKAGES_PER_DAY * EVENTS_PER_PACKAGE / 1e6:.1f} M"))
    lo, hi = INGEST_EVENTS_S
    add(("ingest workers the peak needs", f"{peak_events / hi:.3f}-{peak_events / lo:.3f} of one worker"))
    add(
        (
            "ingest CPU at peak (worker + PostgreSQL)",
            f"{peak_events * INGEST_CLIENT_US[0] / 1e6:.3f}-{peak_events * INGEST_CLIENT_US[1] / 1e6:.3f} + "
            f"{peak_events * INGEST_PG_US[0] / 1e6:.3f}-{peak_events * INGEST_PG_US[1] / 1e6:.3f} cores",
        )
    )
    backlog = PACKAGES_PER_DAY * EVENTS_PER_PACKAGE * OUTBOX_TTL_H / 24
    add(
        (
            f"replay of a {OUTBOX_TTL_H} h network-wide outage ({backlog / 1e6:.0f} M events)",
            f"{backlog / lo / 60:.0f} min on 1 slow worker; {backlog / (2 * hi) / 60:.0f} min on 2 fast ones",
        )
    )
    per_facility_events = PACKAGES_PER_DAY * EVENTS_PER_PACKAGE / FACILITIES
    outbox_mb = per_facility_events * EVENT_BYTES * OUTBOX_TTL_H / 24 / 1e6
    add(("events/day per facility", f"{per_facility_events:,.0f}"))
    add((f"outbox for {OUTBOX_TTL_H} h at a facility", f"{outbox_mb:.0f} MB (quota 1024 MB, volume 4 Gi)"))
    kafka_mb_s = peak_events * EVENT_BYTES / 1e6
    kafka_gb_day = PACKAGES_PER_DAY * EVENTS_PER_PACKAGE * EVENT_BYTES / 1e9
    add(("Kafka at peak / per day (before replication x3)", f"{kafka_mb_s:.2f} MB/s / {kafka_gb_day:.1f} GB"))
    add(("Kafka, 7 days retained, x3 replicas", f"{kafka_gb_day * 7 * 3:.0f} GB over the cluster"))
    cameras_per_facility = CAMERAS / FACILITIES
    add(("cameras per facility", f"{cameras_per_facility:.2f} (39 x 4 + 8 x 3)"))
    need = 4 * CAMERA_FPS
    add(
        (
            "edge, GPU (measured H100 path): 4 cameras x 30 FPS",
            f"{need} frames/s wanted; one process did {GPU_FRAMES_S[3]} of 90 (3 cameras) and "
            f"{GPU_FRAMES_S[8]} of 240 (8): ~1 GPU node per facility, 2 instances of 2 cameras "
            f"({GPU_FRAMES_S[2]} of 60 each) to keep every frame",
        )
    )
    add(
        (
            "edge, CPU only (2 vCPU ONNX Runtime INT8)",
            f"{CPU_FRAMES_S:.0f} frames/s per 2 vCPU: {math.ceil(CAMERAS * CAMERA_FPS / CPU_FRAMES_S) * 2} vCPU "
            f"for every frame of {CAMERAS} cameras",
        )
    )
    add(
        (
            "per shard at peak (8 shards)",
            f"{peak_events / SHARDS:.0f} events/s, ~{FACILITIES / SHARDS:.1f} facilities",
        )
    )
    if bytes_per_package is not None:
        day_gb = bytes_per_package * PACKAGES_PER_DAY / 1e9
        add(("PostgreSQL bytes per package (measured, tables + indexes)", f"{bytes_per_package:,.0f}"))
        add(("PostgreSQL per day / retained 90 days", f"{day_gb:.1f} GB / {day_gb * RETENTION_DAYS:,.0f} GB"))
        add(("per shard retained (8 shards)", f"{day_gb * RETENTION_DAYS / SHARDS:,.0f} GB"))
    return rows


def measure(rows: int) -> tuple[float, dict[str, int]]:
    """Bytes per package on disk after ``bench.query.fill`` of ``rows`` detection rows."""
    import psycopg

    from bench._services import scratch_database
    from bench.query import fill
    from wv.settings import PlatformSettings

    sizes: dict[str, int] = {}
    with scratch_database(PlatformSettings.load(), "wv_sizing") as url:
        fill(url, rows)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
            for table in ("package_detections", "quality_assessments", "anomaly_flags", "packages"):
                (size,) = conn.execute(  # a partitioned table: all its partitions; else the table
                    "SELECT coalesce((SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree(%s)"
                    " WHERE isleaf), pg_total_relation_size(%s))",
                    [table, table],
                ).fetchone() or (0,)
                sizes[table] = int(size)
    packages = rows // EVENTS_PER_PACKAGE
    return sum(sizes.values()) / packages, sizes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measure", action="store_true", help="measure bytes per package on PostgreSQL")
    parser.add_argument("--rows", type=int, default=1_000_000, help="detection rows for --measure")
    args = parser.parse_args(argv)
    per_package = None
    if args.measure:
        per_package, sizes = measure(args.rows)
        for table, size in sizes.items():
            print(
                f"{table:<22} {size / 1e6:8.1f} MB  {size / (args.rows // EVENTS_PER_PACKAGE):6.0f} B/package"
            )
    width = max(len(k) for k, _ in arithmetic(per_package))
    for key, value in arithmetic(per_package):
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
