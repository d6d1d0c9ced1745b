"""The breaker and the retry loop towards the database (no database needed)."""

from __future__ import annotations

import psycopg
import pytest

from foundation.resilience import BreakerState, CircuitBreaker
from realtime.resilience import CircuitOpenError, call_through, call_with_retry, database_breaker


def _fail() -> None:
    raise psycopg.OperationalError("connection refused")


def test_an_open_breaker_fails_fast_and_only_transient_errors_count():
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout_s=60)

    def refused() -> None:
        raise psycopg.errors.CheckViolation("bad row")

    for _ in range(3):
        with pytest.raises(psycopg.errors.CheckViolation):
            call_through(breaker, refused)  # bad data says nothing about the database
    assert breaker.state is BreakerState.CLOSED
    for _ in range(2):
        with pytest.raises(psycopg.OperationalError):
            call_through(breaker, _fail)
    assert breaker.state is BreakerState.OPEN
    attempted = []
    with pytest.raises(CircuitOpenError):
        call_through(breaker, lambda: attempted.append(1))
    assert attempted == []


def test_the_database_breaker_keeps_its_thresholds():
    breaker = database_breaker()
    assert (breaker.failure_threshold, breaker.reset_timeout_s, breaker.name) == (3, 2.0, "database")


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
