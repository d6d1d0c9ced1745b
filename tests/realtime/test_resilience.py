"""The circuit breaker and the retry loop towards the database (no database needed)."""

from __future__ import annotations

import psycopg
import pytest

from realtime.resilience import BreakerState, CircuitBreaker, CircuitOpenError, call_with_retry


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _fail() -> None:
    raise psycopg.OperationalError("connection refused")


def test_the_breaker_opens_after_repeated_failures_and_closes_after_a_good_trial():
    clock = Clock()
    changes: list[BreakerState] = []
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout_s=5, clock=clock, on_change=changes.append)
    for _ in range(2):
        with pytest.raises(psycopg.OperationalError):
            breaker.call(_fail)
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpenError):
        breaker.call(lambda: "not attempted")
    clock.now = 5.1
    with pytest.raises(psycopg.OperationalError):
        breaker.call(_fail)  # the half-open trial fails: open again
    assert breaker.state is BreakerState.OPEN
    clock.now = 10.2
    assert breaker.call(lambda: "ok") == "ok"
    assert changes == [
        BreakerState.OPEN,
        BreakerState.HALF_OPEN,
        BreakerState.OPEN,
        BreakerState.HALF_OPEN,
        BreakerState.CLOSED,
    ]


def test_retries_ride_out_transient_failures_but_not_bad_data():
    attempts = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 4:
            raise psycopg.OperationalError("terminating connection due to administrator command")
        return "stored"

    breaker = CircuitBreaker(failure_threshold=2, reset_timeout_s=0.0)
    assert call_with_retry(flaky, breaker=breaker, sleep=lambda _s: None) == "stored"
    assert breaker.state is BreakerState.CLOSED

    def refused() -> None:
        raise psycopg.errors.CheckViolation("bad row")

    with pytest.raises(psycopg.errors.CheckViolation):
        call_with_retry(refused, breaker=breaker, sleep=lambda _s: None)


def test_giving_up_raises_the_last_error():
    with pytest.raises(psycopg.OperationalError):
        call_with_retry(_fail, breaker=CircuitBreaker(), give_up=lambda: True, sleep=lambda _s: None)
