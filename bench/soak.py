"""Soak: the whole pipeline for N minutes at the reference peak, with a fault every 2 minutes.

    python -m bench.soak [--minutes 30] [--quick] [--fault-every 120] [--rate 280] [--keep]

Three facilities, each a real edge process (``wv edge run`` with an event journal, INT8 ONNX
Runtime; synthetic cameras dense enough for ~rate/3 events/s), a private Tansu broker, one ingest worker
(``wv realtime run``), the window aggregator (``wv realtime windows``), and the centre's stores
as production runs them: a private Patroni cluster (etcd, leader + synchronous standby; the
database reached through its multi-host URL) and Redis with Sentinel (master, replica, three
sentinels). Faults rotate through: the broker hung for 15 s (SIGSTOP; with
``--durable-broker`` — Tansu on moto's S3, which here sustains far less than 280 events/s — it is
killed and restarted instead; the test suite covers that case), PostgreSQL connections
killed and refused (30 s), the Redis master killed after its replica missed 2 s of writes
(windows rebuilt from the database), an edge SIGKILLed and restarted, the
ingest worker SIGKILLed and restarted, an edge's outbox quota reached (its broker unreachable,
quota 50 kB), a model that starts raising (rollback) plus a corrupt one (refused), the
PostgreSQL leader's machine lost (Patroni and PostgreSQL SIGKILLed; it rejoins by pg_rewind), and
the Redis master SIGKILLed (the replica promoted; the old master back as a replica).

Counted by event_id from the edges' journals to the database: generated, stored, lost (beyond
counted quota drops), duplicated, dead-lettered; end-to-end latency (event time → committed row)
p50/p99 inside and outside fault windows; recovery time per fault kind (from the fault healed
until every event journaled by then is stored; for the model fault, from the first failure to
the rollback); memory growth of the long-running processes. Prints the tables, writes
``.local/bench/soak.json`` and the soak section of docs/reliability.md. ``--quick``: 3 minutes,
a fault every 15 s, a 10 s database refusal, docs left alone. Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import signal
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg

from bench._report import host_info, markdown_table, write_report
from bench.reliability import diagnostics
from bench.reliability.faults import (
    Broker,
    FaultError,
    ManagedProcess,
    PostgresOutage,
    S3Store,
    SentinelRedis,
    corrupt_file,
    wait_until,
)
from bench.reliability.journaled_edge import FAULT_MARKER, QUOTA_REASONS, drops_file
from bench.reliability.models import has_verdict, make_version, model_status, point_to
from bench.reliability.patroni import PatroniCluster
from bench.reliability.pipeline import (
    ROOT,
    EdgeNode,
    Endpoints,
    ServiceNode,
    ingest_node,
    prepare_model,
)
from realtime.storage.bootstrap import bootstrap
from wv.services.base import free_port

FACILITIES = ("FAC-001", "FAC-002", "FAC-003")
FAULTS = (
    "broker",
    "database",
    "redis",
    "edge_kill",
    "ingest_kill",
    "outbox_quota",
    "model",
    "pg_leader",
    "redis_master",
)
DOC = ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- soak:begin -->", "<!-- soak:end -->"
ENGINE_PRECISION, ENGINE_FILE = "int8", "model.int8.onnx"
"""What the edges run, as in production (`make setup` builds the INT8 graph of the shipped model)."""
RECOVERY_LIMIT_S = 600.0
"""A fault not healed within this long is diagnosed (``stall-NN.txt``) and reported as a stall."""
EVENTS_PER_ARRIVAL = 27.0
"""Events/s one synthetic camera yields per unit of arrival rate at 10 fps, all detections sent
(measured here: arrival 3 → 81 events/s)."""


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} soak: {message}", file=sys.stderr, flush=True)


@dataclass
class Results:
    duration_min: float
    generated: int
    stored: int
    extra: int
    """Stored without a journal line: only an edge SIGKILLed between its outbox write and journal."""
    lost: int
    """Owed, not stored, and not among the counted quota drops."""
    quota_dropped: int
    """Counted by the edges (``wv_edge_outbox_removed{reason="dropped_quota"|"dropped_quota_anomaly"}``),
    as its outbox recorded them at its last write (``bench.reliability.journaled_edge.drops_file``)."""
    quota_missing: int
    """Measured: in neither the database nor the stopped outbox after the phase, and never stored."""
    anomalies_lost: int
    duplicated: int
    dead_lettered: int
    latency_in: list[float]
    """End-to-end ms of events whose event time falls in a fault window (injection to recovery)."""
    latency_out: list[float]


@dataclass
class Fault:
    kind: str
    injected: float
    """Wall-clock seconds."""
    healed: float = 0.0
    recovered: float = 0.0
    detail: str = ""
    drained: str | None = None
    """A facility whose recovery is its outbox emptied (events it dropped by design never arrive)."""
    stalled: str = ""
    """Where the diagnosis of a recovery that timed out was written (empty: it recovered)."""

    @property
    def recovery_s(self) -> float:
        return max(0.0, self.recovered - self.healed)


class Tracker:
    """Follows the edges' journals; checks only still-pending ids against the database (by its
    primary key, event time + id), so a 30-minute run costs no table scans."""

    def __init__(self, database_url: str, journals: dict[str, Path]) -> None:
        self.database_url = database_url
        self.journals = journals
        self.owed: dict[str, list[tuple[str, datetime]]] = {f: [] for f in journals}
        self.anomalies: set[str] = set()
        self.stored: set[str] = set()
        self.written_off: set[str] = set()
        """Dropped by an outbox quota (measured: neither stored nor in the stopped outbox)."""
        self._offsets = dict.fromkeys(journals, 0)

    def read_journals(self) -> None:
        for facility, path in self.journals.items():
            if not path.exists():
                continue
            with path.open("rb") as f:
                f.seek(self._offsets[facility])
                chunk = f.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]
            self._offsets[facility] += len(complete)
            for line in complete.decode().splitlines():
                event_id, _, anomaly, millis = line.split("\t")
                self.owed[facility].append((event_id, datetime.fromtimestamp(int(millis) / 1000, UTC)))
                if anomaly == "1":
                    self.anomalies.add(event_id)

    def marks(self) -> dict[str, int]:
        """How many events each edge owes right now."""
        self.read_journals()
        return {f: len(ids) for f, ids in self.owed.items()}

    def caught_up(self, marks: dict[str, int]) -> bool:
        """Every event owed at ``marks`` is stored."""
        pending = [
            e
            for f, n in marks.items()
            for e in self.owed[f][:n]
            if e[0] not in self.stored and e[0] not in self.written_off
        ]
        if not pending:
            return True
        try:
            self._check_stored(pending)
        except psycopg.OperationalError:
            return False  # the leader is failing over: ask again on the next poll
        return all(e[0] in self.stored for e in pending)

    def _check_stored(self, pending: list[tuple[str, datetime]]) -> None:
        with psycopg.connect(self.database_url, connect_timeout=5) as conn:
            for i in range(0, len(pending), 5000):
                chunk = pending[i : i + 5000]
                times = [t for _, t in chunk]  # the journal has milliseconds, the table microseconds
                found = conn.execute(
                    "SELECT event_id FROM package_detections WHERE event_time >= %s AND event_time < %s "
                    "AND event_id = ANY(%s)",
                    (min(times), max(times) + timedelta(milliseconds=1), [i for i, _ in chunk]),
                ).fetchall()
                self.stored.update(r[0] for r in found)

    def missing(self, marks: dict[str, int]) -> int:
        """Events owed at ``marks`` not stored (as of the last :meth:`caught_up`)."""
        return sum(e[0] not in self.stored for f, n in marks.items() for e in self.owed[f][:n])

    def write_off(self, facility: str, kept: set[str], since: int, carried: set[str]) -> int:
        """Drops of a quota phase: the facility's events journaled from ``since`` on or ``carried`` in
        its outbox into the phase, neither stored nor ``kept`` (in its outbox after); returns how many.
        Nothing earlier is a candidate: an event already on its way to the centre is not a quota drop."""
        count = self.marks()[facility]
        self.caught_up({facility: count})
        candidates = self.owed[facility][since:count] + [
            e for e in self.owed[facility][:since] if e[0] in carried
        ]
        dropped = {e[0] for e in candidates if e[0] not in self.stored and e[0] not in kept}
        self.written_off |= dropped
        return len(dropped)


@dataclass
class Memory:
    """RSS samples (MB) per process role and start, to report growth of what kept running."""

    samples: dict[tuple[str, int], list[tuple[float, float]]] = field(
        default_factory=lambda: defaultdict(list)
    )

    def sample(self, processes: dict[str, ManagedProcess]) -> None:
        for role, process in processes.items():
            if process.pid is None or not process.alive:
                continue
            try:
                status = Path(f"/proc/{process.pid}/status").read_text()
            except OSError:
                continue
            rss = next(
                (int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), None
            )
            if rss is not None:  # None: it is exiting (a zombie has no resident set)
                self.samples[(role, process.starts)].append((time.time(), rss / 1024))

    def growth(self, warmup_s: float) -> list[dict[str, object]]:
        rows = []
        for (role, start), series in sorted(self.samples.items()):
            kept = [s for s in series if s[0] - series[0][0] >= warmup_s] or series
            if len(kept) < 2:
                continue
            first, last = kept[0][1], kept[-1][1]
            rows.append(
                {
                    "process": role if start == 1 else f"{role} (restart {start - 1})",
                    "minutes": round((kept[-1][0] - kept[0][0]) / 60, 1),
                    "RSS after warm-up MB": round(first),
                    "RSS at end MB": round(last),
                    "growth MB": round(last - first, 1),
                    "peak MB": round(max(v for _, v in series)),
                }
            )
        return rows


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.home = (
            Path(os.environ.get("WV_STATE_DIR", ROOT / ".local")) / "soak" / time.strftime("%Y%m%d-%H%M%S")
        )
        self.home.mkdir(parents=True)
        self.dbname = f"wv_soak_{uuid.uuid4().hex[:8]}"
        self.faults: list[Fault] = []
        self.memory = Memory()
        self.quota_dropped = 0
        self.versions: dict[str, int] = {}
        self.stop_sampling = threading.Event()

    # --- set-up -----------------------------------------------------------------------------
    def setup(self) -> None:
        log(f"database {self.dbname} on a Patroni cluster, state under {self.home}")
        self.cluster = PatroniCluster(self.home / "patroni", self.dbname)
        self.database_url = self.cluster.start()
        bootstrap(self.database_url, facilities=list(FACILITIES), retention_days=30, timezone="UTC")
        self.s3 = S3Store(self.home / "s3") if self.args.durable_broker else None
        if self.s3 is not None:
            self.s3.start()
        self.broker = Broker(self.home / "broker", storage=self.s3)
        self.broker.start()
        self.redis = SentinelRedis(self.home / "redis")
        self.redis.start()
        self.endpoints = Endpoints(self.database_url, self.broker.bootstrap, self.redis.url, "soak.")
        self.endpoints.ensure_topics(partitions=6)
        model = prepare_model(self.home / "model")
        arrival = self.args.rate / len(FACILITIES) / EVENTS_PER_ARRIVAL
        self.edges: dict[str, EdgeNode] = {}
        for i, facility in enumerate(FACILITIES):
            models = self.home / f"models-{facility}"
            make_version(models, "v1", model)
            point_to(models, "v1", None)
            self.versions[facility] = 1
            self.edges[facility] = EdgeNode(
                self.home / f"edge-{facility}",
                facility,
                self.endpoints,
                model_dir=model,
                cameras=[f"synthetic://seed={101 + i}&fps=10&arrival_rate={arrival:.2f}"],
                engine={"name": "wv-fault-injecting", "precision": ENGINE_PRECISION},
                model={"models_dir": str(models), "default": str(models / "v1"), "fallback": None},
                sample_rate=1.0,
                hotswap={"poll_s": 1.0, "shadow_frames": 16, "max_failures": 3, "max_latency_ratio": 100.0},
                budgets={"max_batch": 4},
            )
        self.model_source = model
        self.ingest = ingest_node(self.home / "ingest", self.endpoints)
        self.windows = ServiceNode("windows", self.home / "windows", self.endpoints, ["realtime", "windows"])
        self.tracker = Tracker(self.database_url, {f: e.journal for f, e in self.edges.items()})

    def processes(self) -> dict[str, ManagedProcess]:
        return {
            **{f"edge {f}": e.process for f, e in self.edges.items()},
            "ingest": self.ingest.process,
            "windows": self.windows.process,
            "broker": self.broker.process,
            **({"s3 (moto)": self.s3.process} if self.s3 is not None else {}),
        }

    def start(self) -> None:
        for process in (self.ingest.process, self.windows.process, *(e.process for e in self.edges.values())):
            process.start()
        self.ingest.start_wait()
        self.windows.start_wait()
        for edge in self.edges.values():
            edge.wait_written(20, timeout=180)
        threading.Thread(target=self._sample_memory, daemon=True).start()

    def _sample_memory(self) -> None:
        while not self.stop_sampling.wait(10):
            self.memory.sample(self.processes())

    # --- faults -----------------------------------------------------------------------------
    def _pick(self, kind: str) -> str:
        """The facility a per-edge fault hits this time (rotates)."""
        return FACILITIES[sum(f.kind == kind for f in self.faults) % len(FACILITIES)]

    @contextlib.contextmanager
    def fault(self, kind: str) -> Iterator[Fault]:
        record = Fault(kind, time.time())
        log(f"fault {kind}")
        yield record
        record.healed = record.healed or time.time()
        marks = self.tracker.marks()
        try:
            if record.drained is not None:
                del marks[record.drained]
                edge = self.edges[record.drained]
                wait_until(
                    lambda: edge.outbox_events() == 0,
                    RECOVERY_LIMIT_S,
                    f"{edge.facility} outbox drained",
                    1.0,
                )
            wait_until(lambda: self.tracker.caught_up(marks), RECOVERY_LIMIT_S, f"recovery from {kind}", 1.0)
        except FaultError as exc:
            # Not an abort: the run goes on, and the final count tells lost from late.
            record.stalled = str(self.diagnose(len(self.faults), marks))
            log(f"fault {kind}: {exc}; diagnosis in {record.stalled}")
        record.recovered = record.recovered or time.time()
        self.faults.append(record)
        outcome = f"NOT recovered within {RECOVERY_LIMIT_S:.0f} s" if record.stalled else "recovered in"
        log(f"fault {kind} {outcome} {record.recovery_s:.1f} s {record.detail}")

    def diagnose(self, number: int, marks: dict[str, int]) -> Path:
        """Write where the owed events are stuck (consumer group, database sessions, ingest log)."""
        missing = {f: self.tracker.missing({f: n}) for f, n in marks.items()}
        text = diagnostics.snapshot(
            bootstrap=self.broker.bootstrap,
            group_id=f"{self.endpoints.topic_prefix}ingest",
            topics=self.endpoints.topics()[:2],
            database_url=self.database_url,
            ingest_log=self.ingest.process.log_text(),
            ingest_metrics=_flat(self.ingest.metrics(), prefix="wv_ingest"),
            missing=missing,
        )
        path = self.home / f"stall-{number + 1:02d}.txt"
        path.write_text(text)
        return path

    def inject(self, kind: str) -> None:
        quick = self.args.quick
        with self.fault(kind) as f:
            if kind == "broker" and self.broker.durable:
                self.broker.kill()
                time.sleep(5 if quick else 15)
                self.broker.start()
                f.detail = "killed and restarted (durable storage)"
            elif kind == "broker":  # in memory: a restart would drop acknowledged messages itself
                self.broker.freeze()
                time.sleep(5 if quick else 15)
                self.broker.thaw()
                f.detail = "hung (SIGSTOP) then resumed"
            elif kind == "database":
                with PostgresOutage(self.database_url).during() as outage:
                    time.sleep(self.args.pg_outage_s)
                f.detail = f"{outage.terminated} connections killed, refused {self.args.pg_outage_s:.0f} s"
            elif kind in ("redis", "redis_master") and self.redis.killed is not None:
                f.detail = "skipped: the server killed by the last Redis fault is not back yet"
                self._restore_redis(f)
            elif kind == "redis":  # the promoted replica misses what the master took last
                replica = self.redis.cut_replica()
                time.sleep(2)
                old = self.redis.kill_master()
                os.kill(replica, signal.SIGCONT)
                self.redis.wait_promoted(old, timeout=60)
                f.healed = time.time()
                f.detail = (
                    "replica cut off for 2 s, then the master SIGKILLed: windows rebuilt from the database"
                )
                self._restore_redis(f)
            elif kind == "redis_master":
                old = self.redis.kill_master()
                new = self.redis.wait_promoted(old, timeout=60)
                f.healed = time.time()
                f.detail = f"master :{old[1]} SIGKILLed, :{new[1]} promoted"
                self._restore_redis(f)
            elif kind == "pg_leader":
                failover = self.cluster.kill_leader()
                f.healed = time.time()  # writable again; recovery counts from here, like the other faults
                rejoined = self.cluster.rejoin()
                f.detail = (
                    f"{failover.killed} SIGKILLed (Patroni + PostgreSQL), {failover.promoted} writing after "
                    f"{failover.seconds_to_write:.1f} s; {failover.killed} back as sync standby in {rejoined:.0f} s"
                )
            elif kind == "edge_kill":
                edge = self.edges[self._pick(kind)]
                edge.process.kill()
                edge.start(wait_events=edge.written() + 1, timeout=180)
                f.detail = edge.facility
            elif kind == "ingest_kill":
                self.ingest.process.kill()
                self.ingest.start()
            elif kind == "outbox_quota":
                self._outbox_quota(f, quick)
            elif kind == "model":
                self._model_fault(f)

    def _restore_redis(self, f: Fault) -> None:
        """The killed server back as a replica; a set that does not heal is reported, not fatal."""
        try:
            self.redis.restore(timeout=120)
            f.detail += ", the old one back as a replica"
        except FaultError as exc:
            f.detail += f"; NOT restored: {exc}"
            log(f"redis not restored: {exc}")

    def _outbox_quota(self, f: Fault, quick: bool) -> None:
        """One edge loses its broker (a dead address) with a 50 kB quota; then both come back."""
        edge = self.edges[self._pick("outbox_quota")]
        normal = copy.deepcopy(edge.config)
        edge.process.stop()
        since, carried = self.tracker.marks()[edge.facility], edge.outbox_ids()
        edge.write_config(
            transport={"kafka_bootstrap": f"127.0.0.1:{free_port()}"}, outbox={"quota_mb": 0.05}
        )
        drops = drops_file(edge.journal)
        drops.unlink(missing_ok=True)
        edge.start(wait_events=edge.written() + 1, timeout=180)
        time.sleep(10 if quick else 30)
        edge.process.stop()
        # The outbox's own counters as of its last write: a scrape before the stop missed the stop's drops.
        counted = json.loads(drops.read_text()) if drops.exists() else {}
        dropped, anomalies_dropped = (int(counted.get(r, 0)) for r in QUOTA_REASONS)
        # Nothing was delivered in this phase: what is neither stored nor still in the outbox was dropped.
        measured = self.tracker.write_off(edge.facility, edge.outbox_ids(), since, carried)
        edge.config = normal
        edge.write_config()
        f.healed = time.time()
        f.drained = edge.facility  # its dropped events never arrive: recovered once its outbox is empty
        edge.start(wait_events=edge.written() + 1, timeout=180)
        self.quota_dropped += int(dropped + anomalies_dropped)
        f.detail = (
            f"{edge.facility}: {measured} events dropped ({int(dropped + anomalies_dropped)} counted by the "
            f"edge), {int(anomalies_dropped)} of them anomalies"
        )

    def _model_fault(self, f: Fault) -> None:
        """Promote a copy, make it raise (rollback), then point at a corrupt version (refused)."""
        facility = self._pick("model")
        edge = self.edges[facility]
        models = Path(edge.config["model"]["models_dir"])
        current = str(model_status(edge.model_status_path)["active"])
        good, bad = (f"v{self.versions[facility] + 1}", f"v{self.versions[facility] + 2}")
        self.versions[facility] += 2
        make_version(models, good, self.model_source)
        point_to(models, good, current)
        wait_until(
            lambda: any(has_verdict(edge.model_status_path, good, r) for r in ("promoted", "rejected")),
            120,
            f"a verdict on {good}",
            0.5,
        )
        if not has_verdict(edge.model_status_path, good, "promoted"):
            f.detail = f"{facility}: {good} was rejected by its shadow run, nothing to roll back"
            point_to(models, current, None)
            return
        failed_before = edge.metric("wv_edge_frames_dropped_total", reason="inference_failed")
        broke = time.time()
        (models / good / FAULT_MARKER).touch()
        wait_until(lambda: has_verdict(edge.model_status_path, good, "rolled_back"), 60, "rollback", 0.2)
        rolled_back = time.time()
        failed = edge.metric("wv_edge_frames_dropped_total", reason="inference_failed") - failed_before
        make_version(models, bad, self.model_source)
        corrupt_file(models / bad / ENGINE_FILE)
        point_to(models, bad, current)
        wait_until(
            lambda: has_verdict(edge.model_status_path, bad, "load_failed"), 60, "corrupt refused", 0.5
        )
        point_to(models, current, None)  # the registry rolls the pointer back too
        f.detail = f"{facility}: rollback {rolled_back - broke:.1f} s after the first failure, {int(failed)} frames lost to it; corrupt {bad} refused"
        f.healed, f.recovered = broke, rolled_back

    # --- run --------------------------------------------------------------------------------
    def run(self) -> Results:
        started = time.time()
        end = started + self.args.minutes * 60
        kinds = iter(FAULTS * 100)
        next_fault = started + self.args.fault_every
        while time.time() < end:
            if time.time() >= next_fault:
                self.inject(next(kinds))
                next_fault = max(next_fault + self.args.fault_every, time.time() + 5)
            time.sleep(1)
        log("run over: stopping the edges (they drain their outboxes)")
        for edge in self.edges.values():
            edge.process.stop(60)
        self._final_catch_up()
        self.stop_sampling.set()
        return self.results(started)

    def _final_catch_up(self, settle_s: float = 60.0) -> None:
        """Until every owed event is stored (but written-off quota drops), or nothing moved for a minute."""
        marks = self.tracker.marks()
        missing, since = -1, time.monotonic()
        while not self.tracker.caught_up(marks):
            now_missing = self.tracker.missing(marks)
            if now_missing != missing:
                missing, since = now_missing, time.monotonic()
            elif time.monotonic() - since > settle_s:
                log(f"{missing} events still missing after {settle_s:.0f} s without progress")
                return
            time.sleep(2)

    def results(self, started: float) -> Results:
        owed = {i for ids in self.tracker.owed.values() for i, _ in ids}
        with psycopg.connect(self.database_url) as conn:
            rows = conn.execute(
                "SELECT event_id, count(*), min(extract(epoch FROM event_time)), "
                "min(extract(epoch FROM ingested_at - event_time)) * 1000 FROM package_detections GROUP BY event_id"
            ).fetchall()
            dead = conn.execute("SELECT count(*) FROM dead_letters").fetchone()
        stored = {r[0] for r in rows}
        windows = [(f.injected, f.recovered) for f in self.faults]
        inside: list[float] = []
        outside: list[float] = []
        for _, _, event_time, latency in rows:
            (inside if any(a <= event_time <= b for a, b in windows) else outside).append(float(latency))
        missing = owed - stored
        dropped = missing & self.tracker.written_off
        lost = len(missing - dropped)
        return Results(
            duration_min=(time.time() - started) / 60,
            generated=len(owed),
            stored=len(stored & owed),
            extra=len(stored - owed),
            lost=lost,
            quota_dropped=self.quota_dropped,
            anomalies_lost=len(missing & self.tracker.anomalies),
            quota_missing=len(dropped),
            duplicated=sum(r[1] - 1 for r in rows),
            dead_lettered=int(dead[0]) if dead else 0,
            latency_in=inside,
            latency_out=outside,
        )

    def teardown(self) -> None:
        self.stop_sampling.set()
        for process in self.processes().values():
            with contextlib.suppress(Exception):
                process.kill()
        with contextlib.suppress(Exception):
            self.redis.stop()
        if not self.args.keep:
            with contextlib.suppress(Exception):
                self.cluster.stop()


def _flat(metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], prefix: str) -> dict[str, float]:
    return {
        name + "{" + ",".join(f"{k}={v}" for k, v in sorted(labels)) + "}": value
        for (name, labels), value in metrics.items()
        if name.startswith(prefix)
    }


def _pct(values: list[float], q: float) -> str:
    return f"{np.percentile(values, q):.0f}" if values else "-"


def report(soak: Soak, r: Results, command: str) -> tuple[str, dict[str, float]]:
    inside, outside = r.latency_in, r.latency_out
    summary: list[dict[str, object]] = [
        {"measure": "duration", "value": f"{r.duration_min:.1f} min"},
        {"measure": "events generated (journaled by the edges)", "value": r.generated},
        {"measure": "achieved rate", "value": f"{r.generated / (r.duration_min * 60):.0f} events/s"},
        {"measure": "stored", "value": r.stored},
        {"measure": "lost", "value": r.lost},
        {
            "measure": "outbox quota drops: counted by the edges / missing in the database",
            "value": f"{r.quota_dropped} / {r.quota_missing}",
        },
        {"measure": "anomalies lost", "value": r.anomalies_lost},
        {"measure": "duplicated", "value": r.duplicated},
        {"measure": "stored without a journal line (edge killed between the two writes)", "value": r.extra},
        {"measure": "dead-lettered", "value": r.dead_lettered},
        {
            "measure": "e2e latency p50 / p99 outside faults (ms)",
            "value": f"{_pct(outside, 50)} / {_pct(outside, 99)}",
        },
        {
            "measure": "e2e latency p50 / p99 in fault windows (ms)",
            "value": f"{_pct(inside, 50)} / {_pct(inside, 99)}",
        },
    ]
    by_kind: dict[str, list[Fault]] = defaultdict(list)
    for f in soak.faults:
        by_kind[f.kind].append(f)
    recovery: list[dict[str, object]] = [
        {
            "fault": kind,
            "injected": len(faults),
            "recovery s (mean)": f"{np.mean([f.recovery_s for f in faults]):.1f}",
            "recovery s (max)": f"{max(f.recovery_s for f in faults):.1f}",
            f"not recovered within {RECOVERY_LIMIT_S:.0f} s": sum(bool(f.stalled) for f in faults),
            "last": faults[-1].detail,
        }
        for kind, faults in by_kind.items()
    ]
    memory = soak.memory.growth(warmup_s=60)
    host = host_info()
    load = os.getloadavg()
    text = "\n".join(
        [
            BEGIN,
            f"Command: `{command}`  ",
            f"Run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {host['cpu']}, {host['cores']} cores, "
            f"load average at the end {load[0]:.1f} (the machine is shared).",
            "",
            markdown_table(summary),
            "",
            markdown_table(recovery),
            "",
            "Memory (resident set, sampled every 10 s; restarted processes start a new row):",
            "",
            markdown_table(memory),
            END,
        ]
    )
    metrics = {
        "generated": float(r.generated),
        "lost": float(r.lost),
        "duplicated": float(r.duplicated),
        "dead_lettered": float(r.dead_lettered),
        "p99_out_ms": float(np.percentile(outside, 99)) if outside else 0.0,
        "p99_in_ms": float(np.percentile(inside, 99)) if inside else 0.0,
        **{f"recovery_max_s_{k}": max(f.recovery_s for f in v) for k, v in by_kind.items()},
        "stalls": float(sum(bool(f.stalled) for f in soak.faults)),
    }
    return text, metrics


def write_doc(section: str) -> None:
    text = DOC.read_text() if DOC.exists() else f"# Reliability\n\n## Soak\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text:
        text += f"\n## Soak\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    DOC.write_text(head + section + rest.split(END, 1)[1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--quick", action="store_true", help="3 minutes, a fault every 15 s")
    parser.add_argument("--fault-every", type=float, default=120.0, help="Seconds between faults.")
    parser.add_argument("--rate", type=float, default=280.0, help="Target events/s over the 3 facilities.")
    parser.add_argument(
        "--pg-outage-s", type=float, default=30.0, help="How long PostgreSQL refuses connections."
    )
    parser.add_argument("--keep", action="store_true", help="Keep the soak database afterwards.")
    parser.add_argument(
        "--durable-broker",
        action="store_true",
        help="Broker on S3 (moto), killed and restarted by its fault; too slow here for 280 events/s.",
    )
    parser.add_argument(
        "--no-doc", action="store_true", help="Do not rewrite docs/reliability.md (--quick never does)."
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.minutes, args.fault_every, args.pg_outage_s = 3.0, 15.0, 10.0
    command = "python -m bench.soak " + " ".join(argv if argv is not None else sys.argv[1:])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the teardown: kill what we started
    soak = Soak(args)
    try:
        soak.setup()
        soak.start()
        results = soak.run()
    finally:
        soak.teardown()
    section, metrics = report(soak, results, command.strip())
    write_report("soak", metrics, {"target_rate": args.rate}, [])
    print(section)
    if not (args.no_doc or args.quick):  # `make bench` runs --quick: keep the recorded run
        write_doc(section)


if __name__ == "__main__":
    main()
