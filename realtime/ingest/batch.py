"""A micro-batch of consumed Kafka messages: what to write, per facility shard, and which offsets
it completes."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kafka import TopicPartition

from contract.proto import warehouse_vision_pb2 as pb
from realtime.codec import Decoded
from realtime.storage.rows import BatchRows
from realtime.storage.shards import HOME
from realtime.storage.writer import DeadLetter


@dataclass(slots=True)
class MicroBatch:
    """Events (their flags inside them) and dead letters of consecutive messages, plus the next
    offset per partition."""

    route: Callable[[str], str] | None = None
    """facility id → its shard; None: one shard (every row goes to the home part)."""
    parts: dict[str, BatchRows] = field(default_factory=dict)
    """Events by shard, already turned into rows (see :class:`BatchRows`)."""
    dead_letters: list[DeadLetter] = field(default_factory=list)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    messages: int = 0
    started: float = 0.0
    """Monotonic time the first message arrived."""

    def add(self, tp: TopicPartition, offset: int, decoded: Decoded) -> None:
        if not self.messages:
            self.started = time.monotonic()
        self.messages += 1
        if self.route is None:
            self._part(HOME).add(decoded.events)
        else:
            self._route(decoded.events)
        self.dead_letters.extend(DeadLetter(r, tp.topic, tp.partition, offset) for r in decoded.rejections)
        self.offsets[tp] = offset + 1

    def _part(self, shard: str) -> BatchRows:
        part = self.parts.get(shard)
        if part is None:
            part = self.parts[shard] = BatchRows()
        return part

    def _route(self, events: list[pb.DetectionEvent]) -> None:
        assert self.route is not None
        facilities = {e.facility_id for e in events}
        if len(facilities) == 1:  # the usual message: one camera's batch
            self._part(self.route(facilities.pop())).add(events)
        else:
            for e in events:
                self._part(self.route(e.facility_id)).add((e,))

    @property
    def size(self) -> int:
        """Items to write: events and dead letters."""
        return sum(len(p) for p in self.parts.values()) + len(self.dead_letters)

    def age_ms(self, now: float | None = None) -> float:
        return ((now or time.monotonic()) - self.started) * 1000 if self.messages else 0.0
