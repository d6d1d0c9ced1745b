"""The relay: moves outbox entries to the centre, deleting each only once it is acknowledged.

One thread, one code path for live publishing and for replay after an outage: it always sends
the outbox's first entries (anomalies first, then oldest). Failures back off exponentially with
full jitter; after `breaker_failures` in a row the circuit opens and the relay stops calling the
centre until a probe is due, so a dead broker costs no CPU and no blocked pipeline.

Events travel as the pipeline serialised them (`edge.publish.wire`): the relay reads only their
ids, and the transport frames the stored bytes into a batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

from google.protobuf.message import DecodeError

from edge.outbox.store import Outbox
from edge.publish import wire
from edge.publish.base import Transport, TransportError
from edge.retry import Backoff
from edge.watchdog import Heartbeat
from foundation.resilience import BreakerState, CircuitBreaker

log = logging.getLogger(__name__)

EXPIRE_EVERY_S = 30.0


class Relay:
    def __init__(
        self,
        outbox: Outbox,
        transport: Transport,
        batch_events: int = 500,
        timeout_s: float = 5.0,
        breaker: CircuitBreaker | None = None,
        backoff: Backoff | None = None,
        on_delivered: Callable[[int, float], None] | None = None,
    ) -> None:
        self.outbox = outbox
        self.transport = transport
        self.batch_events = batch_events
        self.timeout_s = timeout_s
        self.breaker = breaker or CircuitBreaker()
        self.backoff = backoff or Backoff(base_s=0.2, cap_s=10.0)
        self.on_delivered = on_delivered
        self.counters: Counter[str] = Counter()
        """batches, delivered, rejected, failures, corrupt."""
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_expire = 0.0
        self.heartbeat = Heartbeat("outbox-relay", has_work=lambda: len(outbox) > 0)
        """Beats per iteration; idle while waiting for events, backing off or the circuit is open."""

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="outbox-relay", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        """New entries were written: send them now instead of at the next poll."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.heartbeat.beat()
            try:
                self.step()
            except Exception:  # a bug must not silently stop delivery: log, back off, go on
                log.exception("outbox relay iteration failed")
                self.counters["failures"] += 1
                self._sleep(self.backoff.next_delay())

    def step(self) -> int:
        """One relay iteration (waits when idle, open or backing off); returns events delivered."""
        now = time.monotonic()
        if now - self._last_expire >= EXPIRE_EVERY_S:
            self._last_expire = now
            if expired := self.outbox.expire():
                log.warning("outbox: %d events expired unacknowledged after the TTL", expired)
        if not self.breaker.allow():
            self._sleep(self.breaker.seconds_until_probe())
            return 0
        entries = self.outbox.pending(self.batch_events)
        if not entries:
            with self.heartbeat.idle():
                self._wake.wait(0.5)
            self._wake.clear()
            return 0
        events, keys_by_id, corrupt = [], {}, []
        for entry in entries:
            try:
                event = wire.read(entry.payload)
            except DecodeError:
                corrupt.append(entry.key)
                continue
            events.append(event)
            keys_by_id[event.event_id] = entry.key
        if corrupt:
            # Unreadable bytes can never be delivered; keeping them would block the queue forever.
            self.counters["corrupt"] += self.outbox.ack(corrupt)
            log.error("outbox: removed %d unreadable entries", len(corrupt))
        if not events:
            return 0
        started = time.monotonic()
        try:
            delivery = self.transport.send(events, self.timeout_s)
        except TransportError as exc:
            self.counters["failures"] += 1
            self.breaker.record_failure()
            delay = self.backoff.next_delay()
            level = logging.WARNING if self.breaker.state is not BreakerState.OPEN else logging.INFO
            log.log(
                level,
                "publish failed (%s); %d events stay in the outbox, retry in %.2fs",
                exc,
                len(events),
                delay,
            )
            self._sleep(delay)
            return 0
        self.breaker.record_success()
        self.backoff.reset()
        done = [keys_by_id[i] for i in (*delivery.acked, *delivery.rejected) if i in keys_by_id]
        self.outbox.ack(done)
        self.counters["batches"] += 1
        self.counters["delivered"] += len(delivery.acked)
        self.counters["rejected"] += len(delivery.rejected)
        for event_id, reason in delivery.rejected.items():
            log.error("centre rejected event %s: %s", event_id, reason)
        if self.on_delivered is not None:
            self.on_delivered(len(delivery.acked), time.monotonic() - started)
        return len(delivery.acked)

    def _sleep(self, seconds: float) -> None:
        with self.heartbeat.idle():
            self._stop.wait(seconds)

    def drain(self, timeout_s: float) -> bool:
        """Wait (at shutdown) until the running relay emptied the outbox or `timeout_s` passed.

        Gives up early when the circuit is open past the deadline; what is left stays durable in
        the outbox for the next start. Returns True when the outbox is empty."""
        deadline = time.monotonic() + timeout_s
        self.notify()
        while len(self.outbox) and time.monotonic() < deadline and self._thread is not None:
            if not self.breaker.allow() and self.breaker.seconds_until_probe() > deadline - time.monotonic():
                break
            time.sleep(0.02)
        return len(self.outbox) == 0

    def stop(self, timeout_s: float | None = None) -> bool:
        """Stop the thread, waiting at most `timeout_s` (default: one send plus 5 s); True once it ended."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_s + 5 if timeout_s is None else max(0.0, timeout_s))
            if self._thread.is_alive():
                return False
            self._thread = None
        return True
