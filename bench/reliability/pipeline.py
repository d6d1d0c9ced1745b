"""The end-to-end pipeline as separate processes: edges → broker → ingest → PostgreSQL (+ Redis).

:class:`EdgeNode` runs one facility's edge service (`journaled_edge`, i.e. ``wv edge run`` with
an event journal) on synthetic cameras; :class:`IngestNode` runs one ingest worker; both read
their endpoints from ``WV_*`` variables like any deployment, and are stopped, killed and
restarted through :class:`~bench.reliability.faults.ManagedProcess`. :class:`Ledger` compares
the edges' journals with the database by ``event_id``: lost, duplicated, extra.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import yaml
from prometheus_client.parser import text_string_to_metric_families

from bench.reliability.faults import ManagedProcess, wait_until
from realtime import kafka
from realtime.storage.facilities import ensure_cameras
from wv.services.base import free_port

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = ROOT / "models" / "default"
RUNTIME_FILES = ("config.json", "metrics.json", "model.onnx", "model.int8.onnx")
"""What the ONNX Runtime engine loads (the INT8 graph only where `wv model export` built it)."""


def prepare_model(target: Path, source: Path = DEFAULT_MODEL) -> Path:
    """A private copy of a model version's FP32 runtime files (ONNX exported if only weights exist).

    Runs never read the shipped ``models/default`` directly: it may be re-exported meanwhile.
    """
    if not (source / "config.json").is_file():
        raise FileNotFoundError(f"no model version at {source}: `wv model train ... --save-version {source}`")
    target.mkdir(parents=True, exist_ok=True)
    for name in RUNTIME_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, target / name)
    if not (target / "model.onnx").is_file():
        from edge.model.version import load_detector
        from model_lifecycle.export import export_onnx

        export_onnx(load_detector(source), target / "model.onnx")
    return target


@dataclass(frozen=True)
class Endpoints:
    """The central services one run uses, and the topic prefix that isolates it."""

    database_url: str
    bootstrap: str
    redis_url: str | None
    topic_prefix: str

    def topics(self) -> list[str]:
        return [f"{self.topic_prefix}{name}" for name in ("detections", "anomalies", "dead-letter")]

    def ensure_topics(self, partitions: int = 3) -> None:
        kafka.ensure_topics(self.bootstrap, self.topics(), partitions=partitions)


def wv_environment(endpoints: Endpoints, state_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``wv`` process of this run (``extra``: more ``WV_*`` values)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WV_")}  # nothing of the caller's
    env.update(
        {
            "WV_STATE_DIR": str(state_dir),
            "WV_DATABASE_URL": endpoints.database_url,
            "WV_KAFKA_BOOTSTRAP": endpoints.bootstrap,
            "WV_KAFKA_TOPIC_PREFIX": endpoints.topic_prefix,
            "WV_INGEST_GROUP_ID": f"{endpoints.topic_prefix}ingest",
            "WV_METRICS_PORT": "0",
            "WV_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            **extra,
        }
    )
    if endpoints.redis_url:
        env["WV_REDIS_URL"] = endpoints.redis_url
    return env


def scrape(port: int, timeout: float = 2.0) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus endpoint as {(name, labels): value}; empty when unreachable."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as response:
            text = response.read().decode()
    except OSError:
        return {}
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def metric_value(
    samples: Mapping[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


class EdgeNode:
    """One facility's edge service in its own process, with a journal of the events it owes.

    Its cameras are ``cam-1``, ``cam-2``, … in the order of ``cameras``; constructing the node
    registers them in the centre's ``cameras`` table (what an operator does with ``wv db cameras
    add`` before an edge starts), so its events are not dead-lettered as ``unknown_camera``.
    """

    def __init__(
        self,
        home: Path,
        facility: str,
        endpoints: Endpoints,
        *,
        model_dir: Path,
        cameras: Sequence[str] = ("synthetic://seed=1&fps=10",),
        model: Mapping[str, Any] | None = None,
        engine: Mapping[str, Any] | None = None,
        sample_rate: float = 0.5,
        outbox_quota_mb: float | None = None,
        env: Mapping[str, str] | None = None,
        **sections: Mapping[str, Any],
    ) -> None:
        """``sections``: more edge.yaml sections (``hotswap={...}``, ``budgets={...}``), merged in."""
        self.home = home
        self.facility = facility
        self.metrics_port = free_port()
        self.journal = home / "journal.tsv"
        self.config_path = home / "edge.yaml"
        self.outbox_path = home / "outbox"
        home.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {
            "facility": facility,
            "cameras": [
                {"id": f"cam-{i + 1}", "source": uri, "policy": "latest"} for i, uri in enumerate(cameras)
            ],
            "engine": {"name": "onnxruntime", "precision": "fp32", "threads": 1, **(engine or {})},
            "model": dict(model) if model else {"version": str(model_dir), "fallback": None},
            "decisions": {"detection_sample_rate": sample_rate},
            "outbox": {"path": str(self.outbox_path), "sync": False},
            "transport": {
                "kafka_bootstrap": endpoints.bootstrap,
                "topic_prefix": endpoints.topic_prefix,
                "timeout_s": 2.0,
                "breaker_failures": 2,
                "breaker_reset_s": 1.0,
                "backoff_cap_s": 1.0,
            },
            "metrics": {"port": self.metrics_port},  # host: WV_METRICS_HOST (127.0.0.1 by default)
            "redis_url": endpoints.redis_url,
            "state_dir": str(home / "state"),
        }
        if outbox_quota_mb is not None:
            config["outbox"]["quota_mb"] = outbox_quota_mb
        for name, values in sections.items():
            config[name] = {**config.get(name, {}), **values}
        self.config = config
        self.write_config()
        self.database_url = endpoints.database_url
        self.register_cameras()
        self.process = ManagedProcess(
            f"edge-{facility}",
            [
                sys.executable,
                "-m",
                "bench.reliability.journaled_edge",
                "--journal",
                str(self.journal),
                "edge",
                "run",
                "--config",
                str(self.config_path),
            ],
            home / "edge.log",
            env={**wv_environment(endpoints, home / "state"), **(env or {})},
            cwd=ROOT,
        )

    @property
    def camera_ids(self) -> list[str]:
        return [str(camera["id"]) for camera in self.config["cameras"]]

    def register_cameras(self) -> None:
        """Register this edge's cameras with the centre (its facility must exist); idempotent."""
        with psycopg.connect(self.database_url, autocommit=True, connect_timeout=10) as conn:
            ensure_cameras(conn, {self.facility: self.camera_ids})

    @property
    def model_status_path(self) -> Path:
        """The edge's model_status.json (hot-swap verdicts)."""
        return Path(self.config["state_dir"]) / "edge" / self.facility / "model_status.json"

    def write_config(self, **sections: Mapping[str, Any]) -> None:
        """(Re)write edge.yaml, with ``sections`` merged in; a restart picks it up."""
        for name, values in sections.items():
            self.config[name] = {**self.config.get(name, {}), **values}
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))

    def start(self, wait_events: int = 1, timeout: float = 90.0) -> None:
        """Start and wait until it has written ``wait_events`` events in all."""
        self.process.start()
        self.wait_written(wait_events, timeout)

    def wait_written(self, events: int, timeout: float = 90.0) -> None:
        """Until the outbox has accepted ``events`` events in all (this run and earlier ones)."""
        wait_until(
            lambda: self._check_alive() and self.written() >= events,
            timeout,
            f"edge {self.facility}: {events} events written",
            0.2,
        )

    def _check_alive(self) -> bool:
        if not self.process.alive:
            raise RuntimeError(f"edge {self.facility} exited; log:\n{self.process.log_text()[-3000:]}")
        return True

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        return scrape(self.metrics_port)

    def metric(self, name: str, **labels: str) -> float:
        return metric_value(self.metrics(), name, **labels)

    def written(self) -> int:
        """Events written to the outbox (journal lines: also right after a restart)."""
        return len(read_journal([self.journal]))

    def outbox_events(self) -> float:
        return self.metric("wv_edge_outbox_events")

    def outbox_ids(self) -> set[str]:
        """Event ids in the outbox (only while the edge is stopped: RocksDB allows one owner)."""
        from contract.proto import warehouse_vision_pb2 as pb
        from edge.outbox.store import Outbox

        outbox = Outbox(self.outbox_path, sync=False)
        try:
            entries = outbox.pending(1 << 30, max_bytes=1 << 40)
            return {pb.DetectionEvent.FromString(e.payload).event_id for e in entries}
        finally:
            outbox.close()

    def wait_drained(self, timeout: float = 60.0) -> None:
        """Until the outbox is empty (everything acknowledged by the broker)."""
        wait_until(
            lambda: self._check_alive() and self.outbox_events() == 0, timeout, "edge outbox drained", 0.2
        )


WV = [sys.executable, "-c", "from wv.cli import main; main()"]
"""The ``wv`` command line of this interpreter."""


class ServiceNode:
    """A long-running ``wv`` process of the centre (``realtime run``, ``realtime windows``, …)."""

    def __init__(
        self,
        name: str,
        home: Path,
        endpoints: Endpoints,
        args: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.home = home
        self.metrics_port = free_port()
        home.mkdir(parents=True, exist_ok=True)
        self.process = ManagedProcess(
            name,
            [*WV, *args],
            home / f"{name}.log",
            env={
                **wv_environment(
                    endpoints,
                    home / "state",
                    WV_METRICS_PORT=str(self.metrics_port),
                    WV_INGEST_BATCH_MS="100",
                ),
                **(env or {}),
            },
            cwd=ROOT,
        )

    def start(self, timeout: float = 60.0) -> None:
        self.process.start()
        self.start_wait(timeout)

    def start_wait(self, timeout: float = 60.0) -> None:
        """Until its metrics endpoint answers (it has loaded its configuration and connected)."""
        wait_until(
            lambda: self._check_alive() and bool(self.metrics()), timeout, f"{self.process.name} metrics", 0.2
        )

    def _check_alive(self) -> bool:
        if not self.process.alive:
            raise RuntimeError(f"{self.process.name} exited; log:\n{self.process.log_text()[-3000:]}")
        return True

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        return scrape(self.metrics_port)


def ingest_node(home: Path, endpoints: Endpoints, *, env: Mapping[str, str] | None = None) -> ServiceNode:
    """One ``wv realtime run`` worker (a member of the run's consumer group)."""
    return ServiceNode("ingest", home, endpoints, ["realtime", "run", "--partitions", "3"], env=env)


@dataclass(frozen=True)
class JournalEntry:
    event_id: str
    kind: str
    anomaly: bool
    event_time_ms: int
    order: int
    """Position in its journal: the order the outbox accepted the events."""


def read_journal(paths: Iterable[Path]) -> dict[str, JournalEntry]:
    """Every event the edges' outboxes accepted (a torn last line, from a SIGKILL, is skipped)."""
    out: dict[str, JournalEntry] = {}
    for path in paths:
        if not path.exists():
            continue
        for order, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
            parts = line.split("\t")
            if len(parts) != 4 or not parts[3].isdigit():
                continue
            out[parts[0]] = JournalEntry(parts[0], parts[1], parts[2] == "1", int(parts[3]), order)
    return out


@dataclass
class Ledger:
    """Owed (journal) versus stored (database rows), by event_id."""

    owed: dict[str, JournalEntry]
    stored: Counter[str] = field(default_factory=Counter)
    assessments: Counter[str] = field(default_factory=Counter)
    dead_letters: int = 0

    @classmethod
    def collect(cls, journals: Iterable[Path], database_url: str, facilities: Sequence[str]) -> Ledger:
        ledger = cls(read_journal(journals))
        with psycopg.connect(database_url, connect_timeout=10) as conn:
            ledger.stored = Counter(
                dict(
                    conn.execute(
                        "SELECT event_id, count(*) FROM package_detections WHERE facility_id = ANY(%s) "
                        "GROUP BY event_id",
                        (list(facilities),),
                    ).fetchall()
                )
            )
            ledger.assessments = Counter(
                dict(
                    conn.execute(
                        "SELECT event_id, count(*) FROM quality_assessments WHERE facility_id = ANY(%s) "
                        "GROUP BY event_id",
                        (list(facilities),),
                    ).fetchall()
                )
            )
            row = conn.execute("SELECT count(*) FROM dead_letters").fetchone()
            ledger.dead_letters = int(row[0]) if row else 0
        return ledger

    @property
    def lost(self) -> set[str]:
        return set(self.owed) - set(self.stored)

    @property
    def duplicated(self) -> int:
        """Rows beyond the first per event id (detections and assessments)."""
        return sum(n - 1 for n in self.stored.values() if n > 1) + sum(
            n - 1 for n in self.assessments.values() if n > 1
        )

    @property
    def extra(self) -> set[str]:
        """Stored but not in a journal: only the last write before a SIGKILL can cause this."""
        return set(self.stored) - set(self.owed)

    def summary(self) -> dict[str, int]:
        return {
            "owed": len(self.owed),
            "stored": len(self.stored),
            "lost": len(self.lost),
            "duplicated": self.duplicated,
            "extra": len(self.extra),
            "dead_letters": self.dead_letters,
        }


def wait_stored(
    journals: Sequence[Path], database_url: str, facilities: Sequence[str], timeout: float
) -> Ledger:
    """Poll until every journaled event is in the database (or ``timeout``); the last ledger."""
    deadline = time.monotonic() + timeout
    while True:
        ledger = Ledger.collect(journals, database_url, facilities)
        if not ledger.lost or time.monotonic() > deadline:
            return ledger
        time.sleep(0.5)


@dataclass(frozen=True)
class TopicMessage:
    partition: int
    offset: int
    event_ids: tuple[str, ...]


def read_batches(bootstrap: str, topic: str, timeout: float = 20.0) -> list[TopicMessage]:
    """Every ``DetectionBatch`` on ``topic`` up to its current end, with its events' ids."""
    from kafka import KafkaConsumer, TopicPartition

    from contract.proto import warehouse_vision_pb2 as pb

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        out: list[TopicMessage] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end[tp] for tp in partitions) and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=200).items():
                for r in records:
                    if r.offset < end[tp]:
                        events = pb.DetectionBatch.FromString(r.value).events
                        out.append(TopicMessage(tp.partition, r.offset, tuple(e.event_id for e in events)))
        return out
    finally:
        consumer.close(autocommit=False)


def committed_offsets(bootstrap: str, group: str, topic: str) -> tuple[dict[int, int], dict[int, int]]:
    """The group's committed offset and the log end offset per partition of ``topic``.

    Asked through a consumer carrying the group id that never subscribes, so it does not join
    the group (no rebalance of the workers).
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        committed = {tp.partition: consumer.committed(tp) or 0 for tp in partitions}
        end = {tp.partition: offset for tp, offset in consumer.end_offsets(partitions).items()}
        return committed, end
    finally:
        consumer.close(autocommit=False)
