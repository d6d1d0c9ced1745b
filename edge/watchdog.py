"""Liveness of the edge's working threads, and the exit codes of ``wv edge run``.

Each working thread owns a :class:`Heartbeat`: the inference loop, every camera reader and the
outbox relay ``beat()`` whenever they make progress, and wrap the waits they make on purpose
(a reconnect backoff, an open circuit, a full queue) in ``idle()``. A heartbeat is *stalled* when
its thread has work (``has_work``: frames waiting for the inference loop, events in the outbox
for the relay, a live source for a reader), is not idle by design, and has not beaten for
``stall_s``. :class:`Watchdog` checks them from its own thread; the service turns a stall into a
failing ``/healthz``, ``wv_edge_healthy 0`` and a stop with :data:`EXIT_STALLED`.

Nothing here blocks or takes a lock another thread may hold: the watchdog must keep working
when the thread it watches is stuck holding one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

EXIT_OK = 0
EXIT_STALLED = 3
"""The watchdog found a component without progress and stopped the edge (a supervisor restarts it)."""
EXIT_SHUTDOWN_DEADLINE = 4
"""A stop did not finish within ``shutdown.timeout_s`` (or a second signal came): the process
exited at once; every event not acknowledged stays in the outbox for the next start."""


def _always() -> bool:
    return True


class Heartbeat:
    """Progress of one working thread (see the module docstring)."""

    def __init__(
        self,
        name: str,
        has_work: Callable[[], bool] = _always,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.has_work = has_work
        self._clock = clock
        self.last = clock()
        self._idle = 0
        self.beats = 0

    def beat(self) -> None:
        """The thread made progress (plain stores: safe from any thread, never blocks)."""
        self.last = self._clock()
        self.beats += 1

    @contextmanager
    def idle(self) -> Iterator[None]:
        """A wait by design (backoff, open circuit, backpressure): not a stall, however long."""
        self._idle += 1
        try:
            yield
        finally:
            self._idle -= 1
            self.beat()

    @property
    def is_idle(self) -> bool:
        return self._idle > 0

    def age(self, now: float | None = None) -> float:
        """Seconds since the last progress."""
        return max(0.0, (self._clock() if now is None else now) - self.last)

    def stalled_for(self, now: float | None = None) -> float:
        """Seconds without progress while it had work (0 while idle or without work)."""
        if self.is_idle:
            return 0.0
        try:
            busy = self.has_work()
        except Exception:  # a racy read of another thread's state: judge it on the next check
            return 0.0
        return self.age(now) if busy else 0.0


@dataclass(frozen=True)
class Stall:
    component: str
    seconds: float


class Watchdog:
    """The heartbeats of one service and the stall limit they are judged by."""

    def __init__(self, stall_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_s = stall_s
        self._clock = clock
        self.heartbeats: list[Heartbeat] = []

    def watch(self, *heartbeats: Heartbeat) -> None:
        self.heartbeats = [*self.heartbeats, *heartbeats]  # replaced, never mutated: readers iterate

    def unwatch(self, heartbeat: Heartbeat) -> None:
        self.heartbeats = [h for h in self.heartbeats if h is not heartbeat]

    def stalls(self) -> list[Stall]:
        """The components stalled for longer than ``stall_s`` right now."""
        now = self._clock()
        found = [Stall(h.name, h.stalled_for(now)) for h in self.heartbeats]
        return [s for s in found if s.seconds > self.stall_s]

    def state(self) -> dict[str, dict[str, float | bool]]:
        """Per component: seconds since progress, whether it has work, whether it is stalled."""
        now = self._clock()
        out: dict[str, dict[str, float | bool]] = {}
        for h in self.heartbeats:
            stalled = h.stalled_for(now)
            out[h.name] = {
                "progress_age_s": round(h.age(now), 3),
                "idle": h.is_idle,
                "stalled": stalled > self.stall_s,
            }
        return out
