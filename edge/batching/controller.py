"""Adaptive batch size and batch wait under the latency budget.

Two knobs, two signals. A cost model (median of the recent inference times per batch size, linear
fit for sizes not yet seen; a single outlier such as a first call that autotunes kernels cannot
poison it) says how large a batch can be while inference stays under the deadline. On top,
AIMD: when the recent end-to-end p99 nears the budget the batch limit and the fill wait are
halved; when frames queue up behind full batches (the box is falling behind) the limit grows by
one, trading per-batch latency for throughput as long as the predicted inference time allows; when
p99 is comfortably low and batches leave partly empty, the fill wait grows by 1 ms so frames from
other cameras can join the batch.

Halving is right when the batch itself is what takes the time (a CPU engine). When it is not —
frames are waiting (backlog) and a batch costs under a quarter of the budget, as on a GPU where a
batch of 64 costs little more than one — the latency is queueing, and a smaller batch would only
lengthen the queue: then an over-budget p99 grows the batch by a quarter instead (measured on an
H100: halving there collapsed 64 cameras to batches of 3.6 and 10 % of the frames processed).
"""

from __future__ import annotations

import statistics
from collections import deque

import numpy as np

COST_SAMPLES = 16
PROBES = 3
"""Batches of a new size tried before the cost model may rule that size out."""


class BatchController:
    def __init__(
        self,
        budget_ms: float,
        deadline_ms: float,
        max_batch: int,
        max_wait_ms: float = 15.0,
        window: int = 256,
        cooldown_batches: int = 8,
    ) -> None:
        self.budget_ms = budget_ms
        self.deadline_ms = deadline_ms
        self.max_batch = max_batch
        self.max_wait_ms = max_wait_ms
        self.limit = 1
        self.wait_ms = 0.0
        self.cooldown_batches = cooldown_batches
        self._cooldown = 0
        self._cost: dict[int, deque[float]] = {}
        self._median: dict[int, float] = {}
        """Median of `_cost` per size, kept up to date as it changes (asked several times a batch)."""
        self._fit: tuple[float, float, float] | None = None
        """(slope, intercept, fastest median) over every size, until the next observation."""
        self._post_ms = 2.0
        self._e2e: deque[float] = deque(maxlen=window)
        self.decreases = 0
        self.increases = 0

    # -- model ------------------------------------------------------------------------------

    def predict_ms(self, n: int) -> float:
        """Expected inference time of a batch of `n` (0 when nothing was measured yet)."""
        if n in self._median:
            return self._median[n]
        if not self._median:
            return 0.0
        if len(self._median) == 1:
            ((size, time),) = self._median.items()
            return time * n / size
        if self._fit is None:
            sizes = np.array(list(self._median), dtype=np.float64)
            times = np.array(list(self._median.values()))
            dx = sizes - sizes.mean()
            slope = float(dx @ (times - times.mean()) / (dx @ dx))  # least squares, as polyfit(…, 1)
            self._fit = (slope, float(times.mean() - slope * sizes.mean()), float(times.min()))
        slope, intercept, fastest = self._fit
        return max(intercept + slope * n, fastest)

    @property
    def post_ms(self) -> float:
        """EWMA of the per-batch time after inference (decode, track, decide, outbox)."""
        return self._post_ms

    def p99(self) -> float:
        return float(np.percentile(self._e2e, 99)) if self._e2e else 0.0

    # -- observations -----------------------------------------------------------------------

    def observe(self, n: int, infer_ms: float, post_ms: float, e2e_ms: list[float], backlog: int) -> None:
        """Record one finished batch and adapt the knobs."""
        costs = self._cost.setdefault(n, deque(maxlen=COST_SAMPLES))
        costs.append(infer_ms)
        self._median[n] = statistics.median(costs)
        self._fit = None
        self._post_ms = 0.8 * self._post_ms + 0.2 * post_ms
        self._e2e.extend(e2e_ms)
        if self._cooldown:
            self._cooldown -= 1
        p99 = self.p99()
        over_budget = len(self._e2e) >= 20 and p99 > 0.9 * self.budget_ms
        over_deadline = self.predict_ms(self.limit) > 0.9 * self.deadline_ms
        queueing = backlog > 0 and self.predict_ms(self.limit) + self._post_ms < 0.25 * self.budget_ms
        if over_budget and queueing and not over_deadline:
            step = max(1, self.limit // 4)
            if self.limit < self.max_batch and self.predict_ms(self.limit + step) <= 0.8 * self.deadline_ms:
                self.limit = min(self.max_batch, self.limit + step)
                self.increases += 1
            self._e2e.clear()  # judge the new setting on its own frames
            return
        if (over_budget or over_deadline) and not self._cooldown:
            self.limit = max(1, self.limit // 2)
            self.wait_ms /= 2
            self._cooldown = self.cooldown_batches
            self.decreases += 1
            if over_budget:
                self._e2e.clear()  # judge the new setting on its own frames
            return
        if self._cooldown or over_deadline:
            return  # hold still after a decrease, and never grow past the deadline
        if backlog > 0 and n >= self.limit and self.limit < self.max_batch:
            untried = self._samples(self.limit + 1) < PROBES
            if untried or self.predict_ms(self.limit + 1) <= 0.8 * self.deadline_ms:
                self.limit += 1
                self.increases += 1
        elif n < self.limit and p99 < 0.5 * self.budget_ms:
            self.wait_ms = min(self.max_wait_ms, self.wait_ms + 1.0)

    def _samples(self, n: int) -> int:
        return len(self._cost.get(n, ()))

    def fill_wait_s(self, oldest_age_ms: float) -> float:
        """How long to wait for more frames before running a partial batch."""
        slack = self.budget_ms - oldest_age_ms - self.predict_ms(self.limit) - self.post_ms
        return max(0.0, min(self.wait_ms, slack * 0.5)) / 1000.0
