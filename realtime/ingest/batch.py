"""A micro-batch of consumed Kafka messages: what to write, and which offsets it completes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from kafka import TopicPartition

from realtime.codec import Decoded
from realtime.storage.rows import BatchRows
from realtime.storage.writer import DeadLetter


@dataclass(slots=True)
class MicroBatch:
    """Events, flags and dead letters of consecutive messages, plus the next offset per partition."""

    rows: BatchRows = field(default_factory=BatchRows)
    """Events and flags, already turned into rows (see :class:`BatchRows`)."""
    dead_letters: list[DeadLetter] = field(default_factory=list)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    messages: int = 0
    started: float = 0.0
    """Monotonic time the first message arrived."""

    def add(self, tp: TopicPartition, offset: int, decoded: Decoded) -> None:
        if not self.messages:
            self.started = time.monotonic()
        self.messages += 1
        self.rows.add(decoded.events, decoded.flags)
        self.dead_letters.extend(DeadLetter(r, tp.topic, tp.partition, offset) for r in decoded.rejections)
        self.offsets[tp] = offset + 1

    @property
    def size(self) -> int:
        """Items to write: events, flags and dead letters."""
        return len(self.rows) + len(self.dead_letters)

    def age_ms(self, now: float | None = None) -> float:
        return ((now or time.monotonic()) - self.started) * 1000 if self.messages else 0.0
