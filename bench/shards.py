"""Ingest with one facility shard vs two, in the same run (issue 19): events/s and what routing costs.

    python -m bench.shards [--events 40000] [--rounds 2]

1. **Routing CPU**: building a micro-batch's rows from decoded messages without routing (one
   shard) and with it (every event's facility looked up, rows split by shard), same messages;
   the difference per event is what routing adds to the consumer thread.
2. **Sustained ingest**, one worker (``IngestWorker``, the code behind ``wv realtime run``, in a
   thread of this process) draining a backlog of DetectionBatch messages from four facilities
   (every message spans both shards: the worst case for routing), into one database (the
   baseline) and into two shards (FAC-001/002 at home, FAC-003/004 on ``east``) on the same
   server; rounds alternate so both see the same machine. The rate is events over the span from
   the first stored row to the last (group join excluded). CPU per event, which a busy shared
   machine disturbs far less than the rate: this process's (the worker's threads, and the row
   counting) from the worker's start to the last commit, and the worker's database backends' on
   every shard.

Both shards live on the one local server and share its 2 cores with the worker, so no gain is
expected; the ratio shows the cost of routing and of two connection pools and lanes.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from tempfile import TemporaryDirectory

import psycopg
from kafka import TopicPartition

from bench._report import write_report
from bench._services import scratch_redis, scratch_topics
from bench.fixtures.events import DEFAULT_CAMERAS, detection_batch
from bench.fixtures.shards import ASSIGNMENT, FACILITIES, shard_databases
from bench.ingest import cpu_seconds
from bench.ingest import make_events as ingest_events
from contract.proto import warehouse_vision_pb2 as pb
from realtime import kafka
from realtime.codec import Decoded
from realtime.ingest.batch import MicroBatch
from realtime.ingest.worker import IngestConfig, IngestWorker
from realtime.storage.shards import HOME, ShardMap
from wv.settings import PlatformSettings

PARTITIONS = 4
PER_MESSAGE = 250


def make_events(count: int) -> list[pb.DetectionEvent]:
    """``count`` unique events (:func:`bench.ingest.make_events`), dealt round-robin to the four
    facilities: every message then spans both shards."""
    events = ingest_events(count, seed=9)
    for i, event in enumerate(events):
        event.facility_id = FACILITIES[i % len(FACILITIES)]
    return events


def routing_cpu(events: list[pb.DetectionEvent], shards: ShardMap) -> tuple[float, float]:
    """µs of consumer CPU per event to build batches without and with routing (best of 5)."""
    chunks = [events[i : i + PER_MESSAGE] for i in range(0, len(events), PER_MESSAGE)]
    tp = TopicPartition("bench", 0)

    def build(route: Callable[[str], str] | None) -> float:
        started = time.process_time()
        batch = MicroBatch(route)
        for offset, chunk in enumerate(chunks):
            batch.add(tp, offset, Decoded(events=chunk))
        return (time.process_time() - started) / len(events) * 1e6

    plain: list[float] = []
    routed: list[float] = []
    for _ in range(5):  # interleaved, after a collection each: both see the same heap and caches
        for route, times in ((None, plain), (shards.shard_of, routed)):
            gc.collect()
            times.append(build(route))
    return min(plain), min(routed)


def _stored(urls: list[str]) -> int:
    total = 0
    for url in urls:
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT count(*) FROM package_detections").fetchone()
            total += row[0] if row else 0
    return total


def _empty(urls: list[str]) -> None:
    for url in urls:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "TRUNCATE package_detections, quality_assessments, anomaly_flags, packages, dead_letters"
            )


@dataclass
class Run:
    """One worker's drain of the backlog: events/s, and CPU per event of the worker's process and
    of its database backends (every shard's, from their connection to the last commit)."""

    rate: float
    client_us: float
    database_us: float


def _backend_cpu(urls: list[str], application: str) -> float:
    """CPU seconds the backends of ``application`` on the servers of ``urls`` have used (each
    backend once: shards on one server list the same ones)."""
    pids: set[int] = set()
    for url in urls:
        with psycopg.connect(url) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (application,)
            )
            pids.update(pid for (pid,) in rows)
    return sum(cpu_seconds(pid) for pid in pids)


def sustained(
    settings: PlatformSettings, base: IngestConfig, shards: ShardMap, values: list[bytes], events: int
) -> Run:
    """What one worker achieves storing a backlog of ``values`` into ``shards``."""
    urls = list(shards.urls.values())
    _empty(urls)
    with scratch_topics(settings, ["detections", "dead-letter"], PARTITIONS) as topics:
        producer = kafka.producer(base.bootstrap, client_id="bench-producer")
        for i, value in enumerate(values):
            producer.send(topics["detections"], value=value, partition=i % PARTITIONS)
        producer.flush(60)
        producer.close(5)
        run = f"bench-shards-{uuid.uuid4().hex[:6]}"
        config = replace(
            base,
            database_url=shards.home_url,
            shards=shards if shards.sharded else None,
            detections_topic=topics["detections"],
            dead_letter_topic=topics["dead-letter"],
            group_id=run,
            client_id=run,
        )
        worker = IngestWorker(config)
        thread = threading.Thread(target=worker.run, daemon=True)
        cpu = time.process_time()
        thread.start()
        try:
            while (stored := _stored(urls)) == 0:
                time.sleep(0.05)
            first, started = stored, time.perf_counter()
            deadline = started + 300
            while stored < events:
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"{stored} of {events} events stored in 300 s")
                time.sleep(0.1)
                stored = _stored(urls)
            rate = (events - first) / (time.perf_counter() - started)
            client, database = time.process_time() - cpu, _backend_cpu(urls, run)
            return Run(rate, client / events * 1e6, database / events * 1e6)
        finally:
            worker.stop.set()
            thread.join(60)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=40_000, help="backlog size per run")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of 1 and 2 shards")
    args = parser.parse_args(argv)
    settings = PlatformSettings.load()
    events = make_events(args.events)
    values = [
        detection_batch(events[i : i + PER_MESSAGE]).SerializeToString()
        for i in range(0, len(events), PER_MESSAGE)
    ]
    cameras = dict.fromkeys(FACILITIES, DEFAULT_CAMERAS)
    runs: dict[int, list[Run]] = {1: [], 2: []}
    with (
        TemporaryDirectory() as one_folder,
        TemporaryDirectory() as two_folder,
        scratch_redis(settings) as redis_url,
        shard_databases(
            settings.database_url, Path(one_folder), dict.fromkeys(FACILITIES, HOME),
            facilities=FACILITIES, cameras=cameras, prefix="wv_bench_one",
        ) as (one, _),
        shard_databases(
            settings.database_url, Path(two_folder), ASSIGNMENT,
            facilities=FACILITIES, cameras=cameras, prefix="wv_bench_two",
        ) as (two, _),
    ):  # fmt: skip
        plain_us, routed_us = routing_cpu(events, two)
        base = IngestConfig.from_settings(settings, redis_url=redis_url)
        for _ in range(args.rounds):
            for n, shards in ((1, one), (2, two)):
                runs[n].append(sustained(settings, base, shards, values, len(events)))

    def median(n: int, field: str) -> float:
        return statistics.median(getattr(r, field) for r in runs[n])

    one_rate, two_rate = median(1, "rate"), median(2, "rate")
    metrics = {
        "events": len(events),
        "rounds": args.rounds,
        "ingest_2_shards_events_per_s": round(two_rate),
        "ratio_2_shards_to_1": round(two_rate / one_rate, 3),
        "worker_cpu_us_per_event_2_shards": round(median(2, "client_us"), 2),
        "db_cpu_us_per_event_2_shards": round(median(2, "database_us"), 2),
        "routing_cpu_us_per_event": round(routed_us - plain_us, 2),
    }
    baseline = {
        "ingest_1_shard_events_per_s": round(one_rate),
        "worker_cpu_us_per_event_1_shard": round(median(1, "client_us"), 2),
        "db_cpu_us_per_event_1_shard": round(median(1, "database_us"), 2),
        "batch_build_cpu_us_per_event": round(plain_us, 2),
    }
    rows = [
        {
            "measure": f"ingest, 1 worker, {n} shard{'s' if n > 1 else ''}"
            + (" (baseline)" if n == 1 else ""),
            "events/s (median)": f"{median(n, 'rate'):,.0f}",
            "runs": ", ".join(f"{r.rate:,.0f}" for r in runs[n]),
            "of 1 shard": f"{median(n, 'rate') / one_rate:.0%}",
            "worker CPU µs/event": f"{median(n, 'client_us'):.1f}",
            "PostgreSQL CPU µs/event": f"{median(n, 'database_us'):.1f}",
        }
        for n in (1, 2)
    ]
    rows.append(
        {
            "measure": "batch building (consumer thread), CPU µs/event",
            "events/s (median)": "",
            "runs": f"{plain_us:.2f} without routing, {routed_us:.2f} with",
            "of 1 shard": f"{routed_us / plain_us:.0%}",
            "worker CPU µs/event": f"+{routed_us - plain_us:.2f}",
            "PostgreSQL CPU µs/event": "",
        }
    )
    write_report("shards", metrics, baseline, rows)


if __name__ == "__main__":
    main()
