"""Kafka → committed rows: sustained ingest rate and end-to-end latency (issue 5, item 8).

    python -m bench.ingest [--quick]

1. **Bare COPY** (the baseline, same run): the same events, pre-built as ``package_detections``
   rows, in one binary COPY through psycopg 3 into the same partitioned table.
2. **Sustained ingest** with 1 and 2 worker processes (``IngestWorker``, the code behind
   ``wv realtime run``): the workers join the group, then the backlog (DetectionBatch messages of
   ``--per-message`` events, 4 detections + 1 decision per package) is produced while they are held
   at their first write, so producing does not compete with them for the CPU; the rate is events
   committed over the span from the first write's start to the last commit.
3. **End-to-end latency** (event time → database commit) at the reference peak of 280 events/s
   and at 60 % of the measured one-worker maximum; event time is set as each message is produced
   (the edge's own batching delay is not part of this figure).

Workers run in child processes; each times its own writes (a wrapper around its sink's
``store_rows``, i.e. after the commit) and sends the figures back. Everything runs on the configured
services in scratch resources (database, Redis index, topics) removed afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import statistics
import threading
import time
import uuid
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench._report import write_report
from bench._services import scratch_database, scratch_redis, scratch_topics
from bench.fixtures.events import DEFAULT_CAMERAS, EventFactory, detection_batch
from contract.events import to_timestamp
from contract.proto import warehouse_vision_pb2 as pb
from realtime import kafka
from realtime.ingest.worker import IngestConfig, IngestWorker
from realtime.storage.rows import EVENT_COLUMNS, event_row
from wv.settings import PlatformSettings

PARTITIONS = 4
HIGH_LOAD = 0.6
"""Share of the measured one-worker rate used for the high-rate latency run: with headroom, so a
noisy shared machine measures latency at a sustainable rate, not a growing backlog."""


FACILITY = "FAC-001"
CAMERAS = {FACILITY: DEFAULT_CAMERAS}
"""The cameras the events come from, registered in the scratch database."""


def make_events(count: int, seed: int = 5) -> list[pb.DetectionEvent]:
    """``count`` valid, unique events: clones of a few thousand realistic ones with new ids."""
    templates = list(EventFactory(FACILITY, seed=seed).stream(1000, detections=4))
    run = uuid.uuid4().hex[:8]
    events = []
    for i in range(count):
        event = pb.DetectionEvent()
        event.CopyFrom(templates[i % len(templates)])
        event.event_id = f"{run}-{i:010d}"
        event.package_id = f"{event.package_id}-{i // len(templates)}"
        events.append(event)
    return events


def messages(events: list[pb.DetectionEvent], per_message: int) -> list[bytes]:
    return [
        detection_batch(events[i : i + per_message]).SerializeToString()
        for i in range(0, len(events), per_message)
    ]


def truncate(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE package_detections, quality_assessments, anomaly_flags, packages, dead_letters"
        )


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a local process has used, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Measured:
    """Events stored over a wall-clock span, and the CPU the client and its backend spent."""

    events: int
    seconds: float
    client_cpu: float
    database_cpu: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    def us_per_event(self, cpu: float) -> float:
        return cpu / self.events * 1e6


def bare_copy(url: str, events: list[pb.DetectionEvent]) -> Measured:
    """One binary COPY of pre-built rows into ``package_detections``."""
    rows = [event_row(e) for e in events]
    statement = sql.SQL("COPY package_detections ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.SQL(", ").join(sql.Identifier(n) for n, _ in EVENT_COLUMNS)
    )
    truncate(url)
    with psycopg.connect(url, autocommit=True) as conn:
        backend = conn.info.backend_pid
        started, cpu, db_cpu = time.perf_counter(), time.process_time(), cpu_seconds(backend)
        with conn.transaction(), conn.cursor() as cur, cur.copy(statement) as copy:
            copy.set_types([t for _, t in EVENT_COLUMNS])
            for row in rows:
                copy.write_row(row)
        measured = Measured(
            len(rows), time.perf_counter() - started, time.process_time() - cpu, cpu_seconds(backend) - db_cpu
        )
    truncate(url)
    return measured


def _timed_worker(config: IngestConfig, stop: Any, go: Any, ready: Any, results: Any) -> None:
    """Child process: a worker whose writes wait for ``go``, then are timed (after commit) per batch
    and per event, with the CPU its process and its database backend spent from the first write on."""
    worker = IngestWorker(config)
    backends = _open_backends(worker)
    store = worker.sink.store_rows
    spans: list[tuple[float, float, int]] = []
    latencies = array("d")
    cpu = {"client": 0.0, "database": 0.0}
    lock = threading.Lock()  # the worker's writer threads share these

    def timed(batch, dead_letters=(), **kwargs):  # type: ignore[no-untyped-def]
        go.wait()
        started = time.time()
        with lock:
            if not spans:
                cpu["client"], cpu["database"] = -time.process_time(), -sum(map(cpu_seconds, backends))
        result = store(batch, dead_letters, **kwargs)
        committed = time.time()
        with lock:
            spans.append((started, committed, len(batch.events)))
            latencies.extend(
                committed - e.event_time.seconds - e.event_time.nanos * 1e-9 for e in batch.events
            )
            cpu["last_client"], cpu["last_database"] = time.process_time(), sum(map(cpu_seconds, backends))
        return result

    worker.sink.store_rows = timed  # type: ignore[method-assign]

    def relay_stop() -> None:
        stop.wait()
        worker.stop.set()

    def report_ready() -> None:  # partitions assigned: the group has settled for this member
        while not stop.is_set():
            consumer = worker._consumer
            if consumer is not None and consumer.assignment():
                ready.put(config.client_id)
                return
            time.sleep(0.1)

    threading.Thread(target=relay_stop, daemon=True).start()
    threading.Thread(target=report_ready, daemon=True).start()
    worker.run()
    used = (cpu.get("last_client", 0.0) + cpu["client"], cpu.get("last_database", 0.0) + cpu["database"])
    results.put((spans, latencies.tobytes(), used))


def _open_backends(worker: IngestWorker) -> list[int]:
    """Open every writer connection of the worker now; the PIDs of their database backends."""
    with contextlib.ExitStack() as stack:
        pool = worker._connections
        return [stack.enter_context(pool.connection()).info.backend_pid for _ in range(worker.config.writers)]


class Workers:
    """``n`` timed worker processes in one consumer group."""

    def __init__(self, config: IngestConfig, n: int) -> None:
        ctx = mp.get_context("spawn")
        self._stop = ctx.Event()
        self._go = ctx.Event()
        self._ready = ctx.Queue()
        self._results = ctx.Queue()
        group = f"{config.group_id}-{uuid.uuid4().hex[:6]}"
        self._procs = [
            ctx.Process(
                target=_timed_worker,
                args=(
                    replace(config, group_id=group, client_id=f"bench-{i}"),
                    self._stop,
                    self._go,
                    self._ready,
                    self._results,
                ),
            )
            for i in range(n)
        ]

    def __enter__(self) -> Workers:
        for proc in self._procs:
            proc.start()
        for _ in self._procs:  # every member holds partitions: the group is stable, start the clock
            self._ready.get(timeout=120)
        time.sleep(0.5)
        return self

    def start(self) -> None:
        """Let the held workers write (the clock starts at the first write)."""
        self._go.set()

    def finish(self) -> tuple[Measured, array]:
        """Stop the workers; what they stored (first write to last commit) and every latency."""
        self._go.set()
        self._stop.set()
        spans: list[tuple[float, float, int]] = []
        latencies = array("d")
        client_cpu = database_cpu = 0.0
        for _ in self._procs:
            child_spans, raw, (client, database) = self._results.get(timeout=120)
            spans += child_spans
            latencies.frombytes(raw)
            client_cpu += client
            database_cpu += database
        for proc in self._procs:
            proc.join(30)
        measured = Measured(
            sum(n for _, _, n in spans),
            max(end for _, end, _ in spans) - min(start for start, _, _ in spans),
            client_cpu,
            database_cpu,
        )
        return measured, latencies

    def __exit__(self, *exc: object) -> None:
        for proc in self._procs:
            if proc.is_alive():
                proc.kill()


def _wait_rows(url: str, expected: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            if conn.execute("SELECT count(*) FROM package_detections").fetchone()[0] >= expected:  # type: ignore[index]
                return
            time.sleep(0.5)
    raise TimeoutError(f"{expected} rows not committed within {timeout_s:.0f} s")


@contextlib.contextmanager
def fresh_topics(settings: PlatformSettings, config: IngestConfig) -> Iterator[IngestConfig]:
    """The config on topics of its own: each phase starts on an empty log."""
    with scratch_topics(settings, ["detections", "dead-letter"], PARTITIONS) as topics:
        yield replace(
            config,
            detections_topic=topics["detections"],
            dead_letter_topic=topics["dead-letter"],
        )


def sustained(
    settings: PlatformSettings,
    base: IngestConfig,
    url: str,
    events: list[pb.DetectionEvent],
    per_message: int,
    n: int,
) -> Measured:
    """What ``n`` workers draining a backlog (produced after they joined, while they wait) achieved."""
    values = messages(events, per_message)
    truncate(url)
    producer = kafka.producer(base.bootstrap, client_id="bench-producer")
    with fresh_topics(settings, base) as config, Workers(config, n) as workers:
        for i, value in enumerate(values):
            producer.send(config.detections_topic, value=value, partition=i % PARTITIONS)
        producer.flush(60)
        workers.start()
        _wait_rows(url, len(events), timeout_s=300)
        measured, _ = workers.finish()
    producer.close(5)
    return measured


def latency(
    settings: PlatformSettings, base: IngestConfig, url: str, rate: float, seconds: float, per_message: int
) -> tuple[float, float, float]:
    """(p50 ms, p99 ms, achieved events/s) of event time → commit at a steady ``rate``."""
    count = int(rate * seconds)
    events = make_events(count, seed=9)
    truncate(url)
    producer = kafka.producer(base.bootstrap, client_id="bench-paced")
    interval = per_message / rate
    with fresh_topics(settings, base) as config, Workers(config, 1) as workers:
        workers.start()
        started = time.perf_counter()
        for i in range(0, count, per_message):
            due = started + (i // per_message) * interval
            time.sleep(max(0.0, due - time.perf_counter()))
            chunk = events[i : i + per_message]
            stamp = to_timestamp(datetime.now(UTC))
            for e in chunk:
                e.event_time.CopyFrom(stamp)
                e.first_seen.CopyFrom(stamp)
            producer.send(
                config.detections_topic,
                value=detection_batch(chunk).SerializeToString(),
                partition=(i // per_message) % PARTITIONS,
            )
        producer.flush(30)
        achieved = count / (time.perf_counter() - started)
        _wait_rows(url, count, timeout_s=120)
        _, latencies = workers.finish()
    producer.close(5)
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1000
    return p50, p99, achieved


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k events, 10 s latency runs (under ~3 min)")
    parser.add_argument("--events", type=int, help="backlog size (default 100k quick, 500k full)")
    parser.add_argument("--per-message", type=int, default=250, help="events per DetectionBatch message")
    args = parser.parse_args(argv)
    total = args.events or (100_000 if args.quick else 500_000)
    seconds = 10.0 if args.quick else 30.0
    settings: PlatformSettings = PlatformSettings.load()
    events = make_events(total)
    with (
        scratch_database(settings, "wv_bench_ingest", cameras=CAMERAS) as url,
        scratch_redis(settings) as redis_url,
    ):
        config = IngestConfig.from_settings(
            settings, database_url=url, redis_url=redis_url, group_id="bench-ingest"
        )
        copy = bare_copy(url, events)
        one = sustained(settings, config, url, events, args.per_message, 1)
        two = sustained(settings, config, url, events, args.per_message, 2)
        peak = latency(settings, config, url, 280.0, seconds, per_message=7)
        high = latency(settings, config, url, HIGH_LOAD * one.rate, seconds, per_message=args.per_message)
    metrics = {
        "events": total,
        "ingest_1_worker_events_per_s": round(one.rate),
        "ingest_2_workers_events_per_s": round(two.rate),
        "ratio_1_worker_to_copy": round(one.rate / copy.rate, 3),
        "ratio_2_workers_to_copy": round(two.rate / copy.rate, 3),
        "worker_cpu_us_per_event": round(one.us_per_event(one.client_cpu), 2),
        "worker_db_cpu_us_per_event": round(one.us_per_event(one.database_cpu), 2),
        "e2e_p50_ms_at_280": round(peak[0], 1),
        "e2e_p99_ms_at_280": round(peak[1], 1),
        "e2e_p50_ms_at_max": round(high[0], 1),
        "e2e_p99_ms_at_max": round(high[1], 1),
        "max_rate_events_per_s": round(high[2]),
    }
    baseline = {
        "bare_copy_events_per_s": round(copy.rate),
        "copy_client_cpu_us_per_event": round(copy.us_per_event(copy.client_cpu), 2),
        "copy_db_cpu_us_per_event": round(copy.us_per_event(copy.database_cpu), 2),
    }

    def row(measure: str, rate: float, of_copy: str = "", cpu: Measured | None = None, e2e: str = "") -> dict:
        client = f"{cpu.us_per_event(cpu.client_cpu):.1f}" if cpu else ""
        database = f"{cpu.us_per_event(cpu.database_cpu):.1f}" if cpu else ""
        return {
            "measure": measure,
            "events/s": f"{rate:,.0f}",
            "of COPY": of_copy,
            "client CPU µs/event": client,
            "PostgreSQL CPU µs/event": database,
            "e2e p50 / p99": e2e,
        }

    rows = [
        row("bare binary COPY into package_detections (baseline)", copy.rate, "100 %", copy),
        row("ingest, 1 worker", one.rate, f"{one.rate / copy.rate:.0%}", one),
        row("ingest, 2 workers", two.rate, f"{two.rate / copy.rate:.0%}", two),
        row("paced at the 280 events/s peak", peak[2], e2e=f"{peak[0]:.0f} / {peak[1]:.0f} ms"),
        row(
            f"paced at {HIGH_LOAD:.0%} of the 1-worker max", high[2], e2e=f"{high[0]:.0f} / {high[1]:.0f} ms"
        ),
    ]
    write_report("ingest", metrics, baseline, rows)


if __name__ == "__main__":
    main()
