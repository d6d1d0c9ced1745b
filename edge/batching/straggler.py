"""Primary inference under a deadline, with the small fallback model for stragglers.

The primary runs on its own worker thread. If it has not answered by the deadline, the fallback
model runs on the same batch; the primary still gets until the frames' remaining latency budget
(`grace`) to answer, and if it does its result supersedes the fallback's before anything is emitted.
Otherwise the fallback result is used, flagged `fallback`, and the outcome carries the primary's
still-running call (`late`): the pipeline emits the fallback's events as provisional and, when the
primary answers, replaces them with the primary's (`edge.batching.late`). While a late primary is
still running, later batches go straight to the fallback (`primary_busy`) rather than queueing
behind it; those stay the fallback's. (Queueing them for the primary as well, to supersede them
after a stall, was tried with up to 4 outstanding: a primary slow on 20 % of its calls then never
went idle, and 99.7 % of batches were the fallback's instead of 65 %, fewer primary answers in the
end — `bench.edge_pipeline --slow-primary 0.2:300`.) A primary that raises counts towards the
model manager's rollback and its batch is answered by the fallback.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from edge.backends.base import check_outputs
from edge.hotswap.manager import LoadedModel, ModelManager


@dataclass
class Outcome:
    raw: dict[str, np.ndarray] | None
    """None when neither model produced a result (the batch's frames are dropped)."""
    model: LoadedModel
    fallback: bool
    infer_ms: float
    primary_ms: float | None
    """The primary's own inference time when it answered (for the shadow comparison)."""
    late: Future[tuple[dict[str, np.ndarray], float]] | None = None
    """The primary's call still running on a batch the fallback answered: its (raw, ms) to come."""


class StragglerRunner:
    def __init__(self, manager: ModelManager, deadline_ms: float, use_fallback: bool = True) -> None:
        self.manager = manager
        self.deadline_s = deadline_ms / 1000
        self.use_fallback = use_fallback
        self.counters: Counter[str] = Counter()
        """batches, fallback_runs, fallback_emitted, superseded, primary_late, primary_busy,
        primary_errors, fallback_errors."""
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="primary")
        self._running: Future[tuple[dict[str, np.ndarray], float]] | None = None
        self._closing = False

    def run(self, primary: LoadedModel, batch: Any, images: Sequence[np.ndarray], grace_s: float) -> Outcome:
        """Infer one batch prepared by `primary` (the active model when the batch was formed) from
        `images` (which the fallback prepares for itself); `grace_s` is how long the frames can
        still wait for the primary."""
        self.counters["batches"] += 1
        outcome = self._run(primary, batch, images, grace_s)
        if outcome.fallback and outcome.raw is not None:
            self.counters["fallback_emitted"] += 1
        return outcome

    def _run(self, primary: LoadedModel, batch: Any, images: Sequence[np.ndarray], grace_s: float) -> Outcome:
        fallback = self.manager.fallback if self.use_fallback else None
        started = time.perf_counter()
        if fallback is not None and self._running is not None and not self._running.done():
            self.counters["primary_busy"] += 1
            return self._fallback(fallback, primary, images, started)
        future = self._pool.submit(_timed_infer, primary, batch)
        self._running = future
        try:
            raw, ms = future.result(timeout=self.deadline_s if fallback is not None else None)
        except FutureTimeout:
            assert fallback is not None
            result = self._fallback(fallback, primary, images, started)
            remaining = grace_s - (time.perf_counter() - started)
            try:
                raw, ms = future.result(timeout=max(0.0, remaining))
            except FutureTimeout:
                self.counters["primary_late"] += 1
                future.add_done_callback(lambda f: self._late_done(primary, f))
                return replace(result, late=future) if result.raw is not None else result
            except Exception as exc:
                self._primary_failed(primary, exc)
                return result
            self.counters["superseded"] += 1
        except Exception as exc:
            self._primary_failed(primary, exc)
            if fallback is None:
                return Outcome(None, primary, False, (time.perf_counter() - started) * 1000, None)
            return self._fallback(fallback, primary, images, started)
        self.manager.record_success()
        return Outcome(raw, primary, False, (time.perf_counter() - started) * 1000, ms)

    def _fallback(
        self, fallback: LoadedModel, primary: LoadedModel, images: Sequence[np.ndarray], started: float
    ) -> Outcome:
        self.counters["fallback_runs"] += 1
        try:
            raw, _ = _timed_infer(fallback, fallback.engine.prepare(images))
        except Exception:
            self.counters["fallback_errors"] += 1
            return Outcome(None, primary, True, (time.perf_counter() - started) * 1000, None)
        return Outcome(raw, fallback, True, (time.perf_counter() - started) * 1000, None)

    def _primary_failed(self, primary: LoadedModel, exc: BaseException) -> None:
        self.counters["primary_errors"] += 1
        self.manager.record_failure(primary, exc)

    def _late_done(self, primary: LoadedModel, future: Future[tuple[dict[str, np.ndarray], float]]) -> None:
        exc = future.exception()
        if exc is not None and not self._closing:
            self._primary_failed(primary, exc)

    def close(self, timeout_s: float = 0.0) -> None:
        """Stop taking batches; a late primary still running gets `timeout_s` to finish, so its
        engine is not closed under it (and a failure it meets after the stop is not counted)."""
        self._closing = True
        running = self._running
        if running is not None and not running.done():
            with contextlib.suppress(Exception):
                running.result(timeout=timeout_s)
        self._pool.shutdown(wait=False, cancel_futures=True)


def _timed_infer(model: LoadedModel, batch: Any) -> tuple[dict[str, np.ndarray], float]:
    started = time.perf_counter()
    raw = check_outputs(model.engine.infer(batch), len(batch))
    return raw, (time.perf_counter() - started) * 1000
