"""The inference interval chosen under load: skip frames on purpose before the queues drop them.

When live (`latest`) cameras lose more than `raise_share` of their frames over a window, every
such camera's interval grows by one (up to `max_interval`): the tracker carries the boxes across
the frames no longer inferred (intervals 2 and 3 kept every decision on the simulator, see
docs/benchmarks.md), where dropped frames fall at random. After `calm_s` without drops it steps
back down by one, never below a camera's configured interval. A step down that brings the drops
back within that wait doubles the wait (up to `max_calm_s`): a box that needs its interval keeps
it instead of dropping frames every `calm_s` to find out again (docs/benchmarks.md, 2 vCPUs).
"""

from __future__ import annotations

import time
from collections.abc import Callable


class IntervalController:
    def __init__(
        self,
        max_interval: int,
        window_s: float = 2.0,
        raise_share: float = 0.05,
        calm_s: float = 30.0,
        max_calm_s: float = 480.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_interval = max_interval
        self.window_s = window_s
        self.raise_share = raise_share
        self.calm_s = calm_s
        self.max_calm_s = max_calm_s
        self.wait_s = calm_s
        """The calm needed before the next step down: calm_s, doubled by each step down that failed."""
        self._lowered_at: float | None = None
        self._clock = clock
        self.extra = 0
        """Added to every live camera's configured interval."""
        self._window_start = clock()
        self._calm_since = clock()
        self._seen = (0, 0)

    def due(self) -> bool:
        """A window has passed: time to call `observe`."""
        return self._clock() - self._window_start >= self.window_s

    def observe(self, handed: int, dropped: int) -> bool:
        """Running totals of frames handed over and dropped by live cameras; True when `extra` changed."""
        now = self._clock()
        if now - self._window_start < self.window_s:
            return False
        handed_d, dropped_d = handed - self._seen[0], dropped - self._seen[1]
        self._seen, self._window_start = (handed, dropped), now
        if handed_d > 0 and dropped_d / handed_d > self.raise_share:
            self._calm_since = now
            if 1 + self.extra < self.max_interval:
                failed = self._lowered_at is not None and now - self._lowered_at < self.wait_s
                self.wait_s = min(2 * self.wait_s, self.max_calm_s) if failed else self.calm_s
                self.extra += 1
                return True
            return False
        if dropped_d:
            self._calm_since = now
        elif self.extra and now - self._calm_since >= self.wait_s:
            self.extra -= 1
            self._calm_since = self._lowered_at = now
            return True
        return False
