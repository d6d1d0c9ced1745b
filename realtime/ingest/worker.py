"""One ingest worker: a Kafka group member that validates, batches, writes, then commits offsets.

It consumes ``wv.detections`` only: an edge's anomaly flags ride inside their events and are
stored in the same transaction, and rule flags are stored by the rules runner itself, so
``wv.anomalies`` (the rules' notifications for live consumers) is never read back in here.

This (consumer) thread polls, validates and builds rows while ``WV_INGEST_WRITERS`` writer
threads, each with its own database connection, store the previous batches, so Python work
overlaps with the database's and the database never waits for the next batch (with one writer
it sits idle while its client commits, fans out and starts the next COPY). A batch is handed to a
writer as soon as one is free and the batch is full (``WV_INGEST_BATCH_SIZE`` items), the consumer
has caught up with the log (low latency at low rates), or the batch is ``WV_INGEST_BATCH_MS`` old.
Batches may commit in any order, but offsets are committed strictly in batch order, each only
after its batch's database commit and all earlier ones; while the database is down the writers
retry with backoff and the consumer pauses its partitions yet keeps polling, so it stays in the
group and commits nothing. With facility shards (``WV_SHARD_MAP``) each batch is split by shard
and written by that shard's lane (:mod:`realtime.ingest.lanes`): a shard that is down holds back
its own facilities' events (and every offset after them) while the other shards keep writing.
SIGTERM stops polling, drains the in-flight and pending batches, commits, and leaves.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, replace

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata

from foundation.redis_connect import connect
from realtime import kafka, metrics
from realtime.codec import Validator
from realtime.dead_letters import DeadLetterPublisher
from realtime.facility_cache import FacilityCache
from realtime.ingest.batch import MicroBatch
from realtime.ingest.lanes import Lanes
from realtime.resilience import call_with_retry
from realtime.settings import CentreSettings
from realtime.sink import EventSink
from realtime.storage.rows import BatchRows
from realtime.storage.shards import ShardMap
from realtime.storage.writer import DeadLetter
from realtime.windows.streams import StreamPublisher

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class IngestConfig:
    """What one worker process runs with: the centre's settings resolved (topics named, one client id).

    Built only by :meth:`from_settings`, so every default lives in :class:`CentreSettings`."""

    bootstrap: str
    database_url: str
    detections_topic: str
    dead_letter_topic: str
    redis_url: str | None
    group_id: str
    batch_size: int
    batch_ms: float
    writers: int
    max_message_bytes: int
    max_future_skew_s: float
    stream_maxlen: int
    fetch_max_wait_ms: int
    held_max_events: int
    shards: ShardMap | None = None
    """Facility shards; None: every facility in ``database_url`` (whose URL must be the home shard's)."""
    drain_timeout_s: float = 30.0
    client_id: str = "wv-ingest"

    @classmethod
    def from_settings(cls, settings: CentreSettings, **overrides: object) -> IngestConfig:
        config = cls(
            bootstrap=settings.kafka_bootstrap,
            database_url=settings.database_url,
            detections_topic=settings.topic("detections"),
            dead_letter_topic=settings.topic("dead-letter"),
            redis_url=settings.redis_url,
            group_id=settings.ingest_group_id,
            batch_size=settings.ingest_batch_size,
            batch_ms=settings.ingest_batch_ms,
            writers=settings.ingest_writers,
            max_message_bytes=settings.ingest_max_message_bytes,
            max_future_skew_s=settings.max_future_skew_s,
            stream_maxlen=settings.stream_maxlen,
            fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
            held_max_events=settings.ingest_held_max_events,
            shards=ShardMap.from_settings(settings) if settings.shard_map else None,
        )
        return replace(config, **overrides)  # type: ignore[arg-type]


class IngestWorker:
    """Run with :meth:`run` in the main thread of a process; stop by setting the event."""

    def __init__(self, config: IngestConfig, stop: threading.Event | None = None) -> None:
        self.config = config
        self.stop = stop or threading.Event()
        self._facilities = FacilityCache.from_database(config.database_url)
        self.validator = Validator(
            self._facilities,
            known_camera=self._facilities.camera,
            max_future_skew_s=config.max_future_skew_s,
            max_message_bytes=config.max_message_bytes,
        )
        self._producer = kafka.producer(
            config.bootstrap, client_id=config.client_id, max_request_bytes=2 * config.max_message_bytes
        )
        self._redis = (
            connect(config.redis_url, socket_timeout=2, failover_s=2.0) if config.redis_url else None
        )
        shards = config.shards or ShardMap.single(config.database_url)
        self._lanes = Lanes(
            shards,
            writers=config.writers,
            client_id=config.client_id,
            dead_letters=DeadLetterPublisher(self._producer, config.dead_letter_topic),
            streams=StreamPublisher(self._redis, maxlen=config.stream_maxlen) if self._redis else None,
        )
        self._route = shards.shard_of if shards.sharded else None
        self.sink = self._lanes.home.sink
        """The home shard's sink (the only one without shards)."""
        self._connections = self._lanes.home.connections
        self._inflight: deque[_Submitted] = deque()
        """Batches handed to the lanes, oldest first: the order their offsets are committed in."""
        self._pending = MicroBatch(self._route)
        self._consumer: KafkaConsumer | None = None
        self._events_per_message = 100.0
        self._lag_at = 0.0

    # --- life cycle -----------------------------------------------------------------------
    def run(self) -> None:
        """Consume until :attr:`stop` is set (or a write fails for good), then drain and close."""
        cfg = self.config
        call_with_retry(self._facilities.prime, breaker=self.sink.breaker, give_up=self.stop.is_set)
        consumer = kafka.consumer(
            cfg.bootstrap, cfg.group_id, client_id=cfg.client_id, fetch_max_wait_ms=cfg.fetch_max_wait_ms
        )
        self._consumer = consumer
        consumer.subscribe([cfg.detections_topic], listener=_Rebalance(self))
        log.info("ingest %s consuming %s", cfg.client_id, cfg.detections_topic)
        try:
            while not self.stop.is_set():
                self._step(consumer)
            self._drain()
        finally:
            consumer.close(autocommit=False)
            self._lanes.close()
            self._producer.close(timeout=5)
            if self._redis is not None:
                self._redis.close()

    def _step(self, consumer: KafkaConsumer) -> None:
        self._reap(block=False)
        full = self._pending.size >= self.config.batch_size
        # One shard: as before sharding, a batch waits while `writers` batches are uncommitted.
        busy = len(self._inflight) >= self.config.writers if self._route is None else self._lanes.busy()
        held = self._lanes.held()
        metrics.HELD_EVENTS.set(held)
        self._pause(consumer, (full and busy) or held >= self.config.held_max_events)
        room = max(1, int((self.config.batch_size - self._pending.size) / self._events_per_message))
        records = consumer.poll(timeout_ms=10 if busy or self._pending.messages else 100, max_records=room)
        received = 0
        for tp, messages in records.items():
            metrics.CONSUMED.labels(tp.topic).inc(len(messages))
            for message in messages:
                self._pending.add(tp, message.offset, self.validator.detection_batch(message.value))
                received += 1
        if received:
            per_message = self._pending.size / max(1, self._pending.messages)
            self._events_per_message = 0.9 * self._events_per_message + 0.1 * per_message
        caught_up = received < room
        if (
            self._pending.messages
            and not busy
            and (full or caught_up or self._pending.age_ms() >= self.config.batch_ms)
        ):
            self._submit()
        self._report_lag(consumer)

    # --- the write pipeline ---------------------------------------------------------------
    def _submit(self) -> None:
        batch, self._pending = self._pending, MicroBatch(self._route)
        done, parts = self._lanes.submit(batch.parts, batch.dead_letters, self._write)
        # Only the offsets stay here: behind a shard that is down, the rows of the batches the
        # other shards stored must not pile up in memory until its offsets can be committed.
        self._inflight.append(_Submitted(batch.offsets, batch.size, done, parts))

    def _write(self, sink: EventSink, rows: BatchRows, dead_letters: list[DeadLetter]) -> object:
        return sink.store_rows(
            rows, dead_letters, source="kafka", give_up=self.stop.is_set, sleep=self.stop.wait
        )

    def _reap(self, *, block: bool, timeout: float | None = None) -> bool:
        """Commit the offsets of the stored batches at the head of the line; False if some batch
        is still being written (and, blocking, did not finish within ``timeout``).

        A batch that failed for good (stop requested during an outage, or a bug) is never
        committed, nor is any later one; the worker then stops, and their messages are consumed
        again from the last committed offsets by whoever owns the partitions next.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._inflight:
            if not self._reap_oldest(
                block, None if deadline is None else max(0.0, deadline - time.monotonic())
            ):
                return False
        return True

    def _reap_oldest(self, block: bool, timeout: float | None) -> bool:
        batch = self._inflight[0]
        future = batch.done
        if not block and not future.done():
            return False
        try:
            future.result(timeout=timeout)
        except TimeoutError:
            return False
        except Exception as exc:
            self._abandon()
            if not self.stop.is_set():
                log.error("batch of %d items not stored, stopping without committing: %s", batch.size, exc)
                self.stop.set()
                raise
            log.warning("batch of %d items not stored before shutdown; it will be consumed again", batch.size)
            return True
        self._inflight.popleft()
        self._commit(batch)
        return True

    def _abandon(self) -> None:
        """Forget every batch not yet committed: it will be consumed again (and deduplicated)."""
        for batch in self._inflight:
            for part in batch.parts:
                part.cancel()
        self._inflight.clear()
        self._pending = MicroBatch(self._route)

    def _commit(self, batch: _Submitted) -> None:
        assert self._consumer is not None
        offsets = {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in batch.offsets.items()}
        try:
            self._consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # The group moved on (rebalance): the new owner re-reads from the last commit and
            # the idempotent write turns the re-read into counted duplicates.
            log.warning("offsets %s not committed (%s); they will be re-read", offsets, exc)

    def _drain(self, timeout: float | None = None) -> None:
        """Write everything consumed so far and commit it (shutdown and partition revocation)."""
        limit = self.config.drain_timeout_s if timeout is None else timeout
        if not self._reap(block=True, timeout=limit):
            log.warning("in-flight batches still running after %.0f s; not committed", limit)
            return
        if self._pending.messages:
            self._submit()
            self._reap(block=True, timeout=limit)

    def _pause(self, consumer: KafkaConsumer, pause: bool) -> None:
        paused = consumer.paused()
        if pause and not paused:
            consumer.pause(*consumer.assignment())
        elif not pause and paused:
            consumer.resume(*paused)

    def _report_lag(self, consumer: KafkaConsumer) -> None:
        now = time.monotonic()
        if now - self._lag_at < 1.0:
            return
        self._lag_at = now
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is not None:
                try:
                    position = consumer.position(tp, timeout_ms=0)
                except KafkaError:
                    continue
                if position is not None:
                    metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(0, high - position))


@dataclass(frozen=True, slots=True)
class _Submitted:
    """A batch handed to the lanes: the offsets it completes, its size, and its futures (all
    parts, and each part to cancel)."""

    offsets: dict[TopicPartition, int]
    size: int
    done: Future[object]
    parts: list[Future[object]]


class _Rebalance(ConsumerRebalanceListener):
    """Before partitions move away, store and commit what was consumed from them."""

    def __init__(self, worker: IngestWorker) -> None:
        self._worker = worker

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if revoked:
            self._worker._drain(timeout=self._worker.config.drain_timeout_s)

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("assigned %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))
