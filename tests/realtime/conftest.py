"""Fixtures for the realtime tier: an ingest configuration on this test's topics, a producer,
and workers running in background threads (stopped like SIGTERM would stop them)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from bench.fixtures.events import DEFAULT_CAMERAS, detection_batch
from bench.fixtures.shards import FACILITIES, reset
from contract.proto import warehouse_vision_pb2 as pb
from realtime import kafka
from realtime.ingest.worker import IngestConfig, IngestWorker
from realtime.storage.facilities import ensure_cameras, ensure_facilities
from realtime.storage.shards import ShardMap
from wv.settings import PlatformSettings


@pytest.fixture
def ingest_config(
    settings: PlatformSettings, database_url: str, redis_url: str, kafka_bootstrap: str, topic_prefix: str
) -> IngestConfig:
    config = IngestConfig.from_settings(
        settings,
        bootstrap=kafka_bootstrap,
        database_url=database_url,
        redis_url=redis_url,
        detections_topic=f"{topic_prefix}detections",
        dead_letter_topic=f"{topic_prefix}dead-letter",
        group_id=f"{topic_prefix}ingest",
        batch_size=200,
        batch_ms=100.0,
        max_message_bytes=64 * 1024,
        drain_timeout_s=15.0,
    )
    kafka.ensure_topics(
        kafka_bootstrap,
        [config.detections_topic, config.dead_letter_topic],
        partitions=3,
    )
    return config


@pytest.fixture
def producer(kafka_bootstrap: str) -> Iterator[KafkaProducer]:
    client = kafka.producer(kafka_bootstrap, client_id="wv-test")
    yield client
    client.close(timeout=5)


ProduceEvents = Callable[[Sequence[pb.DetectionEvent], int], list[bytes]]


@pytest.fixture
def produce_events(producer: KafkaProducer, ingest_config: IngestConfig) -> ProduceEvents:
    """Send events as DetectionBatch messages of ``per_message`` events, keyed by facility."""

    def produce(events: Sequence[pb.DetectionEvent], per_message: int = 20) -> list[bytes]:
        values = []
        for start in range(0, len(events), per_message):
            chunk = events[start : start + per_message]
            value = detection_batch(chunk).SerializeToString()
            producer.send(ingest_config.detections_topic, key=chunk[0].facility_id.encode(), value=value)
            values.append(value)
        producer.flush(10)
        return values

    return produce


@contextmanager
def _running_worker(config: IngestConfig, name: str) -> Iterator[IngestWorker]:
    """A worker in a background thread; leaving the block stops it the way SIGTERM does."""
    worker = IngestWorker(replace(config, client_id=f"{config.group_id}-{name}"))
    errors: list[BaseException] = []

    def target() -> None:
        try:
            worker.run()
        except BaseException as exc:  # surfaced in the test thread below
            errors.append(exc)

    thread = threading.Thread(target=target, name=f"ingest-{name}", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop.set()
        thread.join(60)
        assert not thread.is_alive(), "worker did not stop"
    if errors:
        raise errors[0]


WorkerFactory = Callable[..., AbstractContextManager[IngestWorker]]


@pytest.fixture
def ingest_worker(ingest_config: IngestConfig) -> WorkerFactory:
    """``with ingest_worker("name", **config_overrides) as worker:`` runs one group member."""

    def factory(name: str = "w0", **overrides: object) -> AbstractContextManager[IngestWorker]:
        return _running_worker(replace(ingest_config, **overrides), name)  # type: ignore[arg-type]

    return factory


def _wait_for(predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout:.0f} s")
        time.sleep(interval)


@pytest.fixture
def wait_for() -> Callable[..., None]:
    """``wait_for(predicate, timeout=30)``: poll until true, fail the test on timeout."""
    return _wait_for


@pytest.fixture
def scalar(db: psycopg.Connection) -> Callable[..., Any]:
    """``scalar(sql, *params)``: the first column of the first row."""

    def query(statement: str, *params: object) -> Any:
        row = db.execute(statement, params).fetchone()
        return row[0] if row else None

    return query


@pytest.fixture
def admin_db(database_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the server's maintenance database (for outages and such)."""
    parts = urlsplit(database_url)
    with psycopg.connect(parts._replace(path="/postgres").geturl(), autocommit=True) as conn:
        yield conn


def read_topic(bootstrap: str, topic: str, expected: int, timeout_s: float = 20.0) -> list[ConsumerRecord]:
    """Every message of ``topic`` from the beginning, once ``expected`` have arrived (or timeout)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + timeout_s
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        return records
    finally:
        consumer.close(autocommit=False)


@pytest.fixture
def topic_reader(kafka_bootstrap: str) -> Callable[..., list[ConsumerRecord]]:
    """``topic_reader(topic, expected)``: the topic's messages from the beginning."""
    return lambda topic, expected, timeout_s=20.0: read_topic(kafka_bootstrap, topic, expected, timeout_s)


@pytest.fixture
def shards(shard_set: ShardMap) -> ShardMap:
    """Two facility shards (the session's ``shard_set``), emptied: ``FACILITIES`` split by ``ASSIGNMENT``."""
    reset(shard_set, FACILITIES, dict.fromkeys(FACILITIES, DEFAULT_CAMERAS))
    return shard_set


@pytest.fixture
def one_database(db: psycopg.Connection) -> psycopg.Connection:
    """The single database of before (``db``) with the four facilities of :func:`shards`."""
    ensure_facilities(db, FACILITIES)
    ensure_cameras(db, dict.fromkeys(FACILITIES, DEFAULT_CAMERAS))
    return db
