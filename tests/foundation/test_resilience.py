"""The shared circuit breaker on a fake clock."""

from __future__ import annotations

import logging

import pytest

from foundation.resilience import BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_breaker_opens_after_repeated_failures_and_closes_after_a_good_probe():
    clock = Clock()
    changes: list[BreakerState] = []
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout_s=5, clock=clock, on_change=changes.append)
    breaker.record_failure()
    assert breaker.allow() and breaker.state is BreakerState.CLOSED  # one failure is not enough
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN and not breaker.allow()
    clock.now = 2.0
    assert breaker.seconds_until_probe() == pytest.approx(3.0)
    clock.now = 5.1
    assert breaker.allow() and breaker.state is BreakerState.HALF_OPEN
    assert breaker.seconds_until_probe() == 0.0
    breaker.record_failure()  # the half-open probe fails: open again, for a full timeout
    assert breaker.state is BreakerState.OPEN and not breaker.allow()
    assert breaker.seconds_until_probe() == pytest.approx(5.0)
    clock.now = 10.2
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    breaker.record_success()  # no change, no callback
    assert changes == [
        BreakerState.OPEN,
        BreakerState.HALF_OPEN,
        BreakerState.OPEN,
        BreakerState.HALF_OPEN,
        BreakerState.CLOSED,
    ]


def test_a_success_resets_the_count_of_consecutive_failures():
    breaker = CircuitBreaker(failure_threshold=2)
    for _ in range(3):
        breaker.record_failure()
        breaker.record_success()
    assert breaker.state is BreakerState.CLOSED


def test_a_named_breaker_logs_its_changes(caplog):
    breaker = CircuitBreaker(failure_threshold=1, name="database")
    with caplog.at_level(logging.WARNING, logger="foundation.resilience"):
        breaker.record_failure()
        breaker.record_failure()  # already open: nothing new to say
    assert [r.getMessage() for r in caplog.records] == ["database circuit breaker closed -> open"]
