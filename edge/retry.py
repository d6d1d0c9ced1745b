"""Exponential backoff with full jitter and a circuit breaker, shared by capture and publishing.

Jitter spreads reconnect attempts of many cameras (and many edge boxes after a broker outage) so
they do not hammer the recovering service in lock-step.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum


@dataclass
class Backoff:
    """Delays base·2^n capped at `cap`, each drawn uniformly from [0, delay] ("full jitter")."""

    base_s: float = 0.1
    cap_s: float = 10.0
    rng: random.Random = field(default_factory=random.Random)
    attempts: int = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap_s, self.base_s * (2**self.attempts))
        self.attempts += 1
        return self.rng.uniform(0.0, ceiling)

    def reset(self) -> None:
        self.attempts = 0


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Opens after `failure_threshold` consecutive failures; after `reset_timeout_s` lets one probe through.

    While open, callers skip the remote call entirely instead of queueing timeouts; one success
    in half-open closes it again.
    """

    def __init__(
        self,
        failure_threshold: int = 5,
        reset_timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[BreakerState], None] | None = None,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0

    @property
    def state(self) -> BreakerState:
        with self._lock:
            if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self.reset_timeout_s:
                self._set(BreakerState.HALF_OPEN)
            return self._state

    def allow(self) -> bool:
        """True when a call may be attempted now (closed, or the half-open probe)."""
        return self.state is not BreakerState.OPEN

    def seconds_until_probe(self) -> float:
        with self._lock:
            if self._state is not BreakerState.OPEN:
                return 0.0
            return max(0.0, self.reset_timeout_s - (self._clock() - self._opened_at))

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            if self._state is not BreakerState.CLOSED:
                self._set(BreakerState.CLOSED)

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._state is BreakerState.HALF_OPEN or self._failures >= self.failure_threshold:
                self._opened_at = self._clock()
                if self._state is not BreakerState.OPEN:
                    self._set(BreakerState.OPEN)

    def _set(self, state: BreakerState) -> None:
        self._state = state
        if self._on_change is not None:
            self._on_change(state)
