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
   the first stored row to the last (group join excluded).

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
from dataclasses import replace
from pathlib import Path
from tempfile import TemporaryDirectory

import psycopg
from kafka import TopicPartition

from bench._report import write_report
from bench._services import scratch_redis, scratch_topics
from bench.fixtures.events import DEFAULT_CAMERAS, detection_batch
from bench.fixtures.shards import ASSIGNMENT, FACILITIES, shard_databases
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

    def build(route: object) -> float:
        started = time.process_time()
        batch = MicroBatch(route)  # type: ignore[arg-type]
        for offset, chunk in enumerate(chunks):
            batch.add(tp, offset, Decoded(events=chunk))
        return (time.process_time() - started) / len(events) * 1e6

    plain, routed = [], []
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


def sustained(
    settings: PlatformSettings, base: IngestConfig, shards: ShardMap, values: list[bytes], events: int
) -> float:
    """Events/s one worker stores from a backlog of ``values`` into ``shards``."""
    urls = list(shards.urls.values())
    _empty(urls)
    with scratch_topics(settings, ["detections", "anomalies", "dead-letter"], PARTITIONS) as topics:
        producer = kafka.producer(base.bootstrap, client_id="bench-producer")
        for i, value in enumerate(values):
            producer.send(topics["detections"], value=value, partition=i % PARTITIONS)
        producer.flush(60)
        producer.close(5)
        config = replace(
            base,
            database_url=shards.home_url,
            shards=shards if shards.sharded else None,
            detections_topic=topics["detections"],
            anomalies_topic=topics["anomalies"],
            dead_letter_topic=topics["dead-letter"],
            group_id=f"bench-shards-{uuid.uuid4().hex[:6]}",
        )
        worker = IngestWorker(config)
        thread = threading.Thread(target=worker.run, daemon=True)
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
            return (events - first) / (time.perf_counter() - started)
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
    rates: dict[int, list[float]] = {1: [], 2: []}
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
                rates[n].append(sustained(settings, base, shards, values, len(events)))
    one_rate, two_rate = statistics.median(rates[1]), statistics.median(rates[2])
    metrics = {
        "events": len(events),
        "rounds": args.rounds,
        "ingest_2_shards_events_per_s": round(two_rate),
        "ratio_2_shards_to_1": round(two_rate / one_rate, 3),
        "routing_cpu_us_per_event": round(routed_us - plain_us, 2),
    }
    baseline = {
        "ingest_1_shard_events_per_s": round(one_rate),
        "batch_build_cpu_us_per_event": round(plain_us, 2),
    }
    rows = [
        {
            "measure": "ingest, 1 worker, 1 shard (baseline)",
            "events/s (median)": f"{one_rate:,.0f}",
            "runs": ", ".join(f"{r:,.0f}" for r in rates[1]),
            "of 1 shard": "100 %",
        },
        {
            "measure": "ingest, 1 worker, 2 shards",
            "events/s (median)": f"{two_rate:,.0f}",
            "runs": ", ".join(f"{r:,.0f}" for r in rates[2]),
            "of 1 shard": f"{two_rate / one_rate:.0%}",
        },
        {
            "measure": "batch building, consumer CPU µs/event",
            "events/s (median)": "",
            "runs": f"{plain_us:.2f} without routing, {routed_us:.2f} with",
            "of 1 shard": f"{routed_us / plain_us:.0%}",
        },
    ]
    write_report("shards", metrics, baseline, rows)


if __name__ == "__main__":
    main()
