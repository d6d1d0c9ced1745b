"""The one circuit breaker, shared by the edge (publishing, Redis look-ups) and the centre (database).

It lives in the foundation package because ``edge`` and ``realtime`` may not import each other
(docs/architecture.md). What differs per side stays there: the edge's jittered :class:`edge.retry.Backoff`,
the centre's tenacity retry loop and :class:`realtime.resilience.CircuitOpenError`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from enum import StrEnum

log = logging.getLogger(__name__)


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Opens after `failure_threshold` consecutive failures; after `reset_timeout_s` lets a probe through.

    While open, callers skip the remote call entirely instead of queueing timeouts; one success
    in half-open closes it again, one failure opens it again. Thread-safe, so concurrent callers
    share one breaker. ``on_change`` hears each state change; with a ``name`` each change is also
    logged at WARNING.
    """

    def __init__(
        self,
        failure_threshold: int = 5,
        reset_timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[BreakerState], None] | None = None,
        *,
        name: str | None = None,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self.name = name
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0

    @property
    def state(self) -> BreakerState:
        """The current state; an open breaker whose timeout has passed turns half-open here."""
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
            self._set(BreakerState.CLOSED)

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._state is BreakerState.HALF_OPEN or self._failures >= self.failure_threshold:
                self._opened_at = self._clock()
                self._set(BreakerState.OPEN)

    def _set(self, state: BreakerState) -> None:
        if state is self._state:
            return
        if self.name is not None:
            log.warning("%s circuit breaker %s -> %s", self.name, self._state, state)
        self._state = state
        if self._on_change is not None:
            self._on_change(state)
