"""Ingest's write lanes, one per facility shard: a batch is split by shard and each part is
written by its shard's own writer threads, connections and circuit breaker.

A batch is done when every part is committed; only then are its offsets committed (and only
after every earlier batch's), so a crash between two shards' commits re-reads the batch and
the shard that already has its part deduplicates it (idempotent inserts keyed by event id).
A shard that is down stalls only its lane: its parts wait in the lane's queue, retried until
it is back, while the other lanes keep writing their facilities' events. Offsets stay behind
the oldest held part, so nothing is skipped; the worker stops consuming once the held events
reach ``WV_INGEST_HELD_MAX_EVENTS`` (memory is finite) and resumes as they drain.
With one shard there is one lane and a batch is one part: the single database of before (and
the worker waits, as before, while ``WV_INGEST_WRITERS`` batches are uncommitted).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from functools import partial

from realtime import metrics
from realtime.dead_letters import DeadLetterPublisher
from realtime.resilience import database_breaker
from realtime.sink import EventSink
from realtime.storage.connection import ConnectorPool
from realtime.storage.rows import BatchRows
from realtime.storage.shards import HOME, ShardMap
from realtime.storage.writer import DeadLetter
from realtime.windows.streams import StreamPublisher


class Lane:
    """One shard's writers: a pool of ``writers`` connections and as many threads."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        writers: int,
        client_id: str,
        dead_letters: DeadLetterPublisher | None,
        streams: StreamPublisher | None,
    ) -> None:
        self.name = name
        component = "ingest" if name == HOME else f"ingest:{name}"
        self.connections = ConnectorPool(url, writers, application_name=client_id)
        self.sink = EventSink(
            self.connections.connection,
            component=component,
            breaker=database_breaker(
                on_change=lambda state: metrics.BREAKER_OPEN.labels(component).set(state == "open")
            ),
            dead_letters=dead_letters,
            streams=streams,
        )
        self.writers = writers
        self._executor = ThreadPoolExecutor(max_workers=writers, thread_name_prefix=f"wv-ingest-{name}")
        self._lock = threading.Lock()
        self.parts = 0
        """Parts submitted and not yet finished."""
        self.items = 0
        """Events and flags in those parts."""

    @property
    def stalled(self) -> bool:
        """The shard is failing (its breaker is not closed): its parts are held, not in flight."""
        return self.sink.breaker.state != "closed"

    def submit(self, write: Callable[[EventSink], object], items: int) -> Future[object]:
        with self._lock:
            self.parts += 1
            self.items += items
        future = self._executor.submit(write, self.sink)
        future.add_done_callback(lambda _f: self._finished(items))
        return future

    def _finished(self, items: int) -> None:
        with self._lock:
            self.parts -= 1
            self.items -= items

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.connections.close()


class Lanes:
    """Every shard's :class:`Lane`, home first."""

    def __init__(
        self,
        shards: ShardMap,
        *,
        writers: int,
        client_id: str,
        dead_letters: DeadLetterPublisher | None,
        streams: StreamPublisher | None,
    ) -> None:
        self.shards = shards
        self.lanes = {
            name: Lane(
                name, url, writers=writers, client_id=client_id, dead_letters=dead_letters, streams=streams
            )
            for name, url in shards.urls.items()
        }
        self.home = self.lanes[HOME]

    def submit(
        self,
        parts: dict[str, BatchRows],
        dead_letters: list[DeadLetter],
        store: Callable[[EventSink, BatchRows, list[DeadLetter]], object],
    ) -> tuple[Future[object], list[Future[object]]]:
        """Hand each shard's part to its lane (the dead letters go with the home part); returns a
        future done when all parts are, and the parts' futures (to cancel)."""
        if not parts or (dead_letters and HOME not in parts):
            parts = {HOME: BatchRows(), **parts}
        futures = [
            self.lanes[name].submit(
                partial(_store_part, store, rows=rows, letters=dead_letters if name == HOME else []),
                len(rows),
            )
            for name, rows in parts.items()
        ]
        return (futures[0] if len(futures) == 1 else _all_of(futures)), futures

    def busy(self) -> bool:
        """A lane that is writing has as many parts as writers: wait before handing out more."""
        return any(lane.parts >= lane.writers and not lane.stalled for lane in self.lanes.values())

    def held(self) -> int:
        """Events and flags waiting in the lanes of shards that are down."""
        return sum(lane.items for lane in self.lanes.values() if lane.stalled)

    def close(self) -> None:
        for lane in self.lanes.values():
            lane.close()


def _store_part(
    store: Callable[[EventSink, BatchRows, list[DeadLetter]], object],
    sink: EventSink,
    *,
    rows: BatchRows,
    letters: list[DeadLetter],
) -> object:
    return store(sink, rows, letters)


def _all_of(futures: list[Future[object]]) -> Future[object]:
    """A future done when every one of ``futures`` is: its first exception, else None."""
    combined: Future[object] = Future()
    combined.set_running_or_notify_cancel()
    left = [len(futures)]
    lock = threading.Lock()

    def finished(future: Future[object]) -> None:
        with lock:
            left[0] -= 1
            last = left[0] == 0
        if combined.done():
            return
        error = future.exception() if not future.cancelled() else None
        if future.cancelled():
            error = RuntimeError("a shard's part was cancelled")
        if error is not None:
            _settle(combined, error)
        elif last:
            _settle(combined, None)

    for future in futures:
        future.add_done_callback(finished)
    return combined


def _settle(future: Future[object], error: BaseException | None) -> None:
    try:
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
    except InvalidStateError:  # another part settled it first
        pass
