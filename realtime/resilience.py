"""Fault handling towards the database: a circuit breaker plus exponential backoff (tenacity).

While the database is down, callers block in :func:`call_with_retry` (Kafka ingest: until it is
back or the worker stops; gRPC: until the call's deadline) instead of failing or, worse,
committing offsets for data that was never stored. The breaker makes a dead database cheap:
after ``failure_threshold`` consecutive failures, calls fail fast without connecting until
``reset_timeout_s`` has passed; then one trial call decides whether it closes again. The breaker
itself is the shared :class:`foundation.resilience.CircuitBreaker`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential_jitter

from foundation.resilience import BreakerState, CircuitBreaker

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


def database_breaker(on_change: Callable[[BreakerState], None] | None = None) -> CircuitBreaker:
    """The breaker in front of the database: open after 3 failures in a row, a trial after 2 s."""
    return CircuitBreaker(failure_threshold=3, reset_timeout_s=2.0, on_change=on_change, name="database")


def call_through(breaker: CircuitBreaker, fn: Callable[[], T]) -> T:
    """Run ``fn`` through the breaker: transient failures count, anything else passes through.

    While the breaker is open :class:`CircuitOpenError` is raised without calling ``fn``; after
    the timeout one trial goes through.
    """
    if not breaker.allow():
        raise CircuitOpenError("database circuit open")
    try:
        result = fn()
    except TRANSIENT_ERRORS:
        breaker.record_failure()
        raise
    breaker.record_success()
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
    return retrying(call_through, breaker, fn)
