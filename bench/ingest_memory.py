"""Ingest worker memory under repeated backlog bursts: a working set or a leak?

    python -m bench.ingest_memory [--bursts 8] [--events 100000] [--per-message 500]

The soak's memory table shows the ingest worker's resident set rising by ~100 MB over its first
faults, when the edges replay their outboxes at tens of thousands of events per second. This
isolates that: one worker (``IngestWorker``, the code behind ``wv realtime run``, publishing to
Redis Streams) in a process of its own drains ``--bursts`` backlogs of ``--events`` events each,
produced in DetectionBatch messages of ``--per-message`` events (the edge outbox's replay size).
Its RSS is sampled from /proc while it drains (peak) and two seconds after each burst is stored
(settled). A leak grows with every burst; a working set peaks early and stays at or under it.
Baseline (same run): the same process idle, after it joined the group and before the first burst.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg

from bench._report import write_report
from bench._services import scratch_database, scratch_redis
from bench.ingest import CAMERAS, fresh_topics, make_events, messages
from realtime import kafka
from realtime.ingest.worker import IngestConfig, IngestWorker
from wv.settings import PlatformSettings

PARTITIONS = 4


def rss_mb(pid: int) -> float:
    """Resident set of a local process in MB, from /proc (Linux)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")) / 1024


def _run_worker(config: IngestConfig, stop: Any, ready: Any) -> None:
    """Child process: a plain worker that says when it holds partitions, until ``stop`` is set."""
    worker = IngestWorker(config)

    def watch() -> None:
        while worker._consumer is None or not worker._consumer.assignment():
            time.sleep(0.1)
        ready.set()
        stop.wait()
        worker.stop.set()

    threading.Thread(target=watch, daemon=True).start()
    worker.run()


def _stored(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM package_detections").fetchone()[0]  # type: ignore[index]


def bursts(
    settings: PlatformSettings, config: IngestConfig, url: str, args: argparse.Namespace
) -> tuple[float, list[dict[str, object]]]:
    """The idle RSS, then per burst: seconds to store it, peak RSS while draining, settled RSS."""
    ctx = mp.get_context("spawn")
    stop, ready = ctx.Event(), ctx.Event()
    producer = kafka.producer(config.bootstrap, client_id="bench-producer")
    with fresh_topics(settings, config) as topics:
        proc = ctx.Process(target=_run_worker, args=(topics, stop, ready))
        proc.start()
        try:
            if not ready.wait(120):
                raise TimeoutError("the worker did not join its group within 120 s")
            time.sleep(2)
            idle = rss_mb(proc.pid)  # type: ignore[arg-type]
            rows, total = [], 0
            for n in range(args.bursts):
                values = messages(make_events(args.events, seed=n), args.per_message)
                started = time.monotonic()
                for i, value in enumerate(values):
                    producer.send(topics.detections_topic, value=value, partition=i % PARTITIONS)
                producer.flush(60)
                total += args.events
                peak = rss_mb(proc.pid)  # type: ignore[arg-type]
                deadline = started + 300
                while _stored(url) < total:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"burst {n + 1} not stored within 300 s")
                    peak = max(peak, rss_mb(proc.pid))  # type: ignore[arg-type]
                    time.sleep(0.2)
                seconds = time.monotonic() - started
                time.sleep(2)
                rows.append(
                    {
                        "burst": n + 1,
                        "events stored": f"{total:,}",
                        "seconds": f"{seconds:.1f}",
                        "peak RSS MB": round(peak),
                        "settled RSS MB": round(rss_mb(proc.pid)),  # type: ignore[arg-type]
                    }
                )
                print(rows[-1], flush=True)
        finally:
            stop.set()
            proc.join(60)
            if proc.is_alive():
                proc.kill()
            producer.close(5)
    return idle, rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 bursts of 20k events (under a minute)")
    parser.add_argument("--bursts", type=int, help="backlogs to ingest (default 8, quick 3)")
    parser.add_argument("--events", type=int, help="events per burst (default 100k, quick 20k)")
    parser.add_argument("--per-message", type=int, default=500, help="events per DetectionBatch message")
    args = parser.parse_args(argv)
    args.bursts = args.bursts or (3 if args.quick else 8)
    args.events = args.events or (20_000 if args.quick else 100_000)
    settings = PlatformSettings.load()
    with (
        scratch_database(settings, "wv_bench_ingest_memory", cameras=CAMERAS) as url,
        scratch_redis(settings) as redis_url,
    ):
        config = IngestConfig.from_settings(
            settings, database_url=url, redis_url=redis_url, group_id="bench-ingest-memory"
        )
        idle, rows = bursts(settings, replace(config, client_id="bench-memory"), url, args)
    peaks = [int(r["peak RSS MB"]) for r in rows]  # type: ignore[call-overload]
    settled = [int(r["settled RSS MB"]) for r in rows]  # type: ignore[call-overload]
    metrics = {
        "bursts": args.bursts,
        "events_per_burst": args.events,
        "peak_rss_mb": max(peaks),
        "first_burst_peak_rss_mb": peaks[0],
        "last_burst_peak_rss_mb": peaks[-1],
        "settled_rss_mb_first": settled[0],
        "settled_rss_mb_last": settled[-1],
    }
    idle_row = {"burst": "idle (baseline)", "events stored": 0, "seconds": "", "peak RSS MB": ""}
    write_report(
        "ingest_memory",
        metrics,
        {"idle_rss_mb": round(idle)},
        [{**idle_row, "settled RSS MB": round(idle)}, *rows],
    )


if __name__ == "__main__":
    main()
