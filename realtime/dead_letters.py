"""Dead letters on the ``wv.dead-letter`` topic, after their row is committed to ``dead_letters``.

The table is the record (exactly once per message position and item); the topic is the live
feed for operators and re-drive tools (at least once: a crash between the database commit and
the topic publish republishes on replay). Each message value is the raw bytes as received,
keyed by facility, with the reason and the source position in headers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from kafka import KafkaProducer
from kafka.errors import KafkaError, MessageSizeTooLargeError

from realtime.storage.writer import DeadLetter

log = logging.getLogger(__name__)


def headers(letter: DeadLetter) -> list[tuple[str, bytes]]:
    """The ``wv-*`` headers describing why and where from."""
    r = letter.rejection
    out = [("wv-reason", r.text.encode()), ("wv-source", letter.source.encode())]
    if letter.partition is not None:
        out.append(("wv-source-partition", str(letter.partition).encode()))
    if letter.offset is not None:
        out.append(("wv-source-offset", str(letter.offset).encode()))
    out.append(("wv-source-item", str(r.item).encode()))
    if r.event_id:
        out.append(("wv-event-id", r.event_id.encode()))
    return out


class DeadLetterPublisher:
    """Publishes committed dead letters; blocks (retrying) until the broker has them."""

    def __init__(self, producer: KafkaProducer, topic: str, *, timeout_s: float = 10.0) -> None:
        self._producer = producer
        self.topic = topic
        self._timeout_s = timeout_s

    def publish(
        self,
        letters: Sequence[DeadLetter],
        *,
        give_up: Callable[[], bool] = lambda: False,
        sleep: Callable[[float], object] = time.sleep,
    ) -> int:
        """Send every letter; transient broker errors are retried until ``give_up()``. Returns sent."""
        pending = list(letters)
        delay = 0.1
        while pending:
            futures = [
                (
                    letter,
                    self._producer.send(
                        self.topic,
                        key=(letter.rejection.facility_id or "").encode() or None,
                        value=letter.rejection.raw,
                        headers=headers(letter),
                    ),
                )
                for letter in pending
            ]
            self._producer.flush(self._timeout_s)
            failed = []
            for letter, future in futures:
                try:
                    future.get(timeout=0)
                except MessageSizeTooLargeError as exc:
                    log.error("dead letter too large for the topic, kept in the table only: %s", exc)
                except KafkaError as exc:
                    log.warning("dead letter not published yet: %s", exc)
                    failed.append(letter)
            if failed and give_up():
                log.error("%d dead letters not published to %s (kept in the table)", len(failed), self.topic)
                return len(letters) - len(failed)
            if failed:
                sleep(delay)
                delay = min(delay * 2, 5.0)
            pending = failed
        return len(letters)
