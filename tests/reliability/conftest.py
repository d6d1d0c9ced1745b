"""Fixtures of the fault-injection suite: a private broker per test (memory, or durable on an S3
look-alike), and the pipeline's processes (edges, ingest workers), always killed at the end.

Every scenario runs the real processes end to end — edge (`bench.reliability.journaled_edge`,
i.e. ``wv edge run`` plus a journal of the event ids it owes) → broker → ingest worker →
PostgreSQL — and counts by event_id with :class:`bench.reliability.pipeline.Ledger`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.reliability.faults import Broker, RedisServer, S3Store
from bench.reliability.pipeline import EdgeNode, Endpoints, ServiceNode, ingest_node, prepare_model


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped default model's FP32 runtime files, copied once per session."""
    try:
        return prepare_model(tmp_path_factory.mktemp("model") / "default")
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A private in-memory broker (freezing it is safe; restarting it would lose its log)."""
    b = Broker(tmp_path / "broker")
    b.start()
    yield b
    b.kill()


@pytest.fixture
def durable_broker(tmp_path: Path) -> Iterator[Broker]:
    """A private broker whose log and group offsets live in S3 (moto): it survives restarts."""
    store = S3Store(tmp_path / "s3")
    store.start()
    b = Broker(tmp_path / "broker", storage=store)
    b.start()
    yield b
    b.kill()
    store.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def endpoints_for(database_url: str, topic_prefix: str) -> Callable[..., Endpoints]:
    """``endpoints_for(broker, redis_url=None)``: this test's endpoints, topics created."""

    def make(broker: Broker, redis_url: str | None = None) -> Endpoints:
        endpoints = Endpoints(database_url, broker.bootstrap, redis_url, topic_prefix)
        endpoints.ensure_topics()
        return endpoints

    return make


class Pipeline:
    """The processes of one test; :meth:`close` kills whatever is still running."""

    def __init__(self, home: Path, model_dir: Path) -> None:
        self.home = home
        self.model_dir = model_dir
        self.edges: list[EdgeNode] = []
        self.ingests: list[ServiceNode] = []
        self.services: list[ServiceNode] = []

    def edge(self, facility: str, endpoints: Endpoints, **options: Any) -> EdgeNode:
        node = EdgeNode(
            self.home / f"edge-{facility}", facility, endpoints, model_dir=self.model_dir, **options
        )
        self.edges.append(node)
        return node

    def ingest(self, endpoints: Endpoints, **options: Any) -> ServiceNode:
        node = ingest_node(self.home / f"ingest-{len(self.ingests)}", endpoints, **options)
        self.ingests.append(node)
        return node

    def service(self, name: str, endpoints: Endpoints, *args: str) -> ServiceNode:
        """Another ``wv`` process of the centre, e.g. ``service("windows", e, "realtime", "windows")``."""
        node = ServiceNode(name, self.home / f"{name}-{len(self.services)}", endpoints, args)
        self.services.append(node)
        return node

    def start(self, *, wait_events: int = 30) -> None:
        """Start every ingest worker and edge at once; return when each edge wrote ``wait_events``."""
        for node in [*self.ingests, *self.edges]:
            node.process.start()
        for ingest in self.ingests:
            ingest.start_wait()
        for edge in self.edges:
            edge.wait_written(wait_events)

    @property
    def journals(self) -> list[Path]:
        return [e.journal for e in self.edges]

    def logs(self) -> str:
        nodes = [*self.edges, *self.ingests, *self.services]
        return "\n".join(f"=== {n.process.name}\n{n.process.log_text()[-4000:]}" for n in nodes)

    def close(self) -> None:
        for node in [*self.edges, *self.ingests, *self.services]:
            node.process.kill()


@pytest.fixture
def pipeline(tmp_path: Path, db: Any, model_dir: Path, request: pytest.FixtureRequest) -> Iterator[Pipeline]:
    """The processes of this test (the database emptied first); their logs are printed on failure."""
    p = Pipeline(tmp_path, model_dir)
    yield p
    p.close()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(p.logs())


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
