"""Fault handling towards the database: a circuit breaker plus exponential backoff (tenacity).

While the database is down, callers block in :func:`call_with_retry` (Kafka ingest: until it is
back or the worker stops; gRPC: until the call's deadline) instead of failing or, worse,
committing offsets for data that was never stored. The breaker makes a dead database cheap:
after ``failure_threshold`` consecutive failures, calls fail fast without connecting until
``reset_timeout_s`` has passed; then one trial call decides whether it closes again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from enum import StrEnum
from typing import TypeVar

import psycopg
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential_jitter

log = logging.getLogger(__name__)
T = TypeVar("T")


class CircuitOpenError(RuntimeError):
    """The breaker is open: the call was not attempted."""


TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,  # includes AdminShutdown (pg_terminate_backend) and refused connections
    psycopg.InterfaceError,  # a connection found closed
    CircuitOpenError,
)
"""Errors that mean "the database is unavailable, try again later", never "bad data"."""


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Counts consecutive failures; thread-safe, so concurrent gRPC calls share one breaker."""

    def __init__(
        self,
        *,
        failure_threshold: int = 3,
        reset_timeout_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[BreakerState], None] | None = None,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self._clock = clock
        self._on_change = on_change
        self._failures = 0
        self._opened_at = 0.0
        self._state = BreakerState.CLOSED
        self._lock = threading.Lock()

    @property
    def state(self) -> BreakerState:
        return self._state

    def _set(self, state: BreakerState) -> None:
        if state != self._state:
            log.warning("database circuit breaker %s -> %s", self._state, state)
            self._state = state
            if self._on_change:
                self._on_change(state)

    def before_call(self) -> None:
        """Raise :class:`CircuitOpenError` while open; let one trial through after the timeout."""
        with self._lock:
            if self._state == BreakerState.OPEN:
                if self._clock() - self._opened_at < self.reset_timeout_s:
                    raise CircuitOpenError("database circuit open")
                self._set(BreakerState.HALF_OPEN)

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._set(BreakerState.CLOSED)

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._state == BreakerState.HALF_OPEN or self._failures >= self.failure_threshold:
                self._opened_at = self._clock()
                self._set(BreakerState.OPEN)

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` through the breaker: transient failures count, anything else passes through."""
        self.before_call()
        try:
            result = fn()
        except TRANSIENT_ERRORS:
            self.record_failure()
            raise
        self.record_success()
        return result


def call_with_retry(
    fn: Callable[[], T],
    *,
    breaker: CircuitBreaker,
    give_up: Callable[[], bool] = lambda: False,
    sleep: Callable[[float], object] = time.sleep,
    initial_s: float = 0.05,
    max_wait_s: float = 5.0,
    on_retry: Callable[[BaseException], None] | None = None,
) -> T:
    """Call ``fn`` until it succeeds, retrying transient database errors with exponential backoff.

    ``give_up`` is asked before each retry (a stop flag, a deadline); when it says yes the last
    error is raised. ``sleep`` may be an ``Event.wait`` so a shutdown interrupts the backoff.
    Non-transient errors are raised at once.
    """

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if exc is not None:
            if state.attempt_number == 1 or not isinstance(exc, CircuitOpenError):
                log.warning("database unavailable (attempt %d): %s", state.attempt_number, exc)
            if on_retry:
                on_retry(exc)

    def pause(seconds: float) -> None:
        sleep(seconds)

    retrying = Retrying(
        retry=retry_if_exception_type(TRANSIENT_ERRORS),
        wait=wait_exponential_jitter(initial=initial_s, max=max_wait_s),
        stop=lambda _state: give_up(),
        sleep=pause,
        before_sleep=before_sleep,
        reraise=True,
    )
    return retrying(breaker.call, fn)
