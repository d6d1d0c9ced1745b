"""Where validated batches go, for Kafka ingest and gRPC alike: durable write, then fan-out.

``store`` returns only once the batch is committed (retrying through database outages until
the caller gives up) and its dead letters are on the dead-letter topic; only then may the
caller commit Kafka offsets or acknowledge a gRPC batch. Redis fan-out follows, best effort.

Each anomaly flag comes here once, on one path: an edge flag inside its event (Kafka ingest or
the gRPC stream), stored in the event's transaction; a rule flag from the rules runner. A replay
of the same message is absorbed by the writer's idempotency; standalone (rule) flags are fanned
out only when this write stored them, so a rule pass re-judging its overlap announces nothing twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

import psycopg

from contract.proto import warehouse_vision_pb2 as pb
from foundation.resilience import CircuitBreaker
from realtime import metrics
from realtime.dead_letters import DeadLetterPublisher
from realtime.resilience import call_with_retry, database_breaker
from realtime.storage.rows import BatchRows
from realtime.storage.writer import DeadLetter, EventWriter, WriteResult
from realtime.windows.streams import StreamPublisher

log = logging.getLogger(__name__)

ConnectionSource = Callable[[], AbstractContextManager[psycopg.Connection]]
"""A callable returning a context manager that lends a connection (a Connector or pool)."""


class EventSink:
    """Durably stores batches through the one :class:`EventWriter`; thread-safe with a pool."""

    def __init__(
        self,
        connections: ConnectionSource,
        *,
        component: str,
        breaker: CircuitBreaker | None = None,
        writer: EventWriter | None = None,
        dead_letters: DeadLetterPublisher | None = None,
        streams: StreamPublisher | None = None,
    ) -> None:
        self._connections = connections
        self.component = component
        self.breaker = breaker or database_breaker(
            on_change=lambda state: metrics.BREAKER_OPEN.labels(component).set(state == "open")
        )
        self._writer = writer or EventWriter()
        self._dead_letters = dead_letters
        self._streams = streams

    def store(
        self,
        events: Sequence[pb.DetectionEvent],
        flags: Sequence[pb.AnomalyFlag] = (),
        dead_letters: Sequence[DeadLetter] = (),
        *,
        source: str,
        give_up: Callable[[], bool] = lambda: False,
        sleep: Callable[[float], object] = time.sleep,
    ) -> WriteResult:
        """Write atomically (retrying transient failures), publish dead letters, fan out."""
        return self.store_rows(
            BatchRows.of(events, flags), dead_letters, source=source, give_up=give_up, sleep=sleep
        )

    def store_rows(
        self,
        batch: BatchRows,
        dead_letters: Sequence[DeadLetter] = (),
        *,
        source: str,
        give_up: Callable[[], bool] = lambda: False,
        sleep: Callable[[float], object] = time.sleep,
    ) -> WriteResult:
        """:meth:`store` for a batch whose rows were built while the previous one was written."""

        def attempt() -> WriteResult:
            with self._connections() as conn:
                return self._writer.write_rows_isolating(conn, batch, dead_letters, source=source)

        started = time.perf_counter()
        result = call_with_retry(
            attempt,
            breaker=self.breaker,
            give_up=give_up,
            sleep=sleep,
            on_retry=lambda _exc: metrics.DB_RETRIES.labels(self.component).inc(),
        )
        metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)
        self._observe(batch, result, source, dead_letters)
        letters = [*dead_letters, *result.rejected]
        if letters and self._dead_letters is not None:
            self._dead_letters.publish(letters, give_up=give_up, sleep=sleep)
        if self._streams is not None:
            self._streams.publish(
                batch.events, [f for f in batch.flags if f.anomaly_id in result.new_flag_ids]
            )
        return result

    @staticmethod
    def _observe(batch: BatchRows, result: WriteResult, source: str, letters: Sequence[DeadLetter]) -> None:
        events = batch.events
        metrics.BATCH_EVENTS.observe(len(events))
        metrics.EVENTS_WRITTEN.labels(source).inc(result.events_written)
        metrics.FLAGS_WRITTEN.labels(source).inc(result.flags_written)
        metrics.DUPLICATES.labels(source).inc(
            result.event_duplicates + result.flag_duplicates + batch.repeated
        )
        for letter in (*letters, *result.rejected):
            metrics.DEAD_LETTERED.labels(source, letter.rejection.reason.value).inc()
        if events:
            now = time.time()
            step = max(1, len(events) // 50)  # a sample keeps the histogram cheap on big batches
            for e in events[::step]:
                ts = e.event_time
                metrics.EVENT_LAG_SECONDS.observe(now - ts.seconds - ts.nanos * 1e-9)
