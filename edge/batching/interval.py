"""The inference interval chosen under load: skip frames on purpose before the queues drop them.

When live (`latest`) cameras lose more than `raise_share` of their frames over a window, every
such camera's interval grows by one (up to `max_interval`): the tracker carries the boxes across
the frames no longer inferred (intervals 2 and 3 kept every decision on the simulator, see
docs/benchmarks.md), where dropped frames fall at random. After `calm_s` without drops it steps
back down by one, never below a camera's configured interval.
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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_interval = max_interval
        self.window_s = window_s
        self.raise_share = raise_share
        self.calm_s = calm_s
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
                self.extra += 1
                return True
            return False
        if dropped_d:
            self._calm_since = now
        elif self.extra and now - self._calm_since >= self.calm_s:
            self.extra -= 1
            self._calm_since = now
            return True
        return False
