"""The inference interval chosen under load: skip frames on purpose before the queues drop them.

When live (`latest`) cameras lose more than `raise_share` of their frames over a window, every
such camera's interval grows by one (up to `max_interval`): the tracker carries the boxes across
the frames no longer inferred (intervals 2 and 3 kept every decision on the simulator, see
docs/benchmarks.md), where dropped frames fall at random. After `calm_s` without drops it steps
back down by one, never below a camera's configured interval, and only when the loop would still
have room at the lower interval: the busiest loop thread's share of the calm stretch, scaled by
k / (k - 1) for the frames it would then infer, must stay within `fit_share`. A step down that
cannot fit is never tried (each try drops frames for seconds: docs/benchmarks.md, 2 vCPUs); one
that was tried and brought the drops back within the wait doubles the wait (up to `max_calm_s`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence


class IntervalController:
    def __init__(
        self,
        max_interval: int,
        window_s: float = 2.0,
        raise_share: float = 0.05,
        calm_s: float = 30.0,
        max_calm_s: float = 480.0,
        fit_share: float = 0.8,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_interval = max_interval
        self.window_s = window_s
        self.raise_share = raise_share
        self.calm_s = calm_s
        self.max_calm_s = max_calm_s
        self.fit_share = fit_share
        self.wait_s = calm_s
        """The calm needed before the next step down: calm_s, doubled by each step down that failed."""
        self._lowered_at: float | None = None
        self._clock = clock
        self.extra = 0
        """Added to every live camera's configured interval."""
        self._window_start = clock()
        self._calm_since = clock()
        self._busy_since: Sequence[float] | None = None
        """The loop threads' busy seconds when the calm stretch began."""
        self._seen = (0, 0)
        self.held = 0
        """Step downs not tried because the lower interval would not fit."""

    def due(self) -> bool:
        """A window has passed: time to call `observe`."""
        return self._clock() - self._window_start >= self.window_s

    def observe(self, handed: int, dropped: int, busy_s: Sequence[float] | None = None) -> bool:
        """Running totals of frames handed over and dropped by live cameras and of the seconds each
        loop thread worked (None: unknown, every step down is tried); True when `extra` changed."""
        now = self._clock()
        if now - self._window_start < self.window_s:
            return False
        handed_d, dropped_d = handed - self._seen[0], dropped - self._seen[1]
        self._seen, self._window_start = (handed, dropped), now
        if handed_d > 0 and dropped_d / handed_d > self.raise_share:
            self._calm(now, busy_s)
            if 1 + self.extra < self.max_interval:
                failed = self._lowered_at is not None and now - self._lowered_at < self.wait_s
                self.wait_s = min(2 * self.wait_s, self.max_calm_s) if failed else self.calm_s
                self.extra += 1
                return True
            return False
        if dropped_d:
            self._calm(now, busy_s)
        elif self.extra and now - self._calm_since >= self.wait_s:
            if not self._fits_lower(now, busy_s):
                self.held += 1
                self._calm(now, busy_s)  # judged again on the next stretch's load
                return False
            self.extra -= 1
            self._lowered_at = now
            self._calm(now, busy_s)
            return True
        return False

    def _calm(self, now: float, busy_s: Sequence[float] | None) -> None:
        self._calm_since, self._busy_since = now, busy_s

    def _fits_lower(self, now: float, busy_s: Sequence[float] | None) -> bool:
        """The busiest thread's share of the calm stretch, at the interval one lower, within fit_share."""
        before = self._busy_since
        elapsed = now - self._calm_since
        if busy_s is None or before is None or elapsed <= 0:
            return True
        share = max(b - a for a, b in zip(before, busy_s, strict=True)) / elapsed
        k = 1 + self.extra
        return share * k / (k - 1) <= self.fit_share
