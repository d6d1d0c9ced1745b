"""The hand-over between the inference loop's two threads, with a pause that empties it.

The batching thread forms batches and runs them through the engine and the decode; the other
thread tracks, decides and writes the outbox. At most `depth` batches wait between them, so a slow
second stage holds the first back (and frames wait, or are dropped, in the camera queues as
before). Camera changes must apply with no batch in flight (a removed camera's frames would
otherwise reach a tracker that is gone): `pause` parks the batching thread at its next turn,
handing over whatever it still carried, and `resume` lets it go on.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Handoff(Generic[T]):
    def __init__(self, depth: int = 1) -> None:
        self._queue: queue.Queue[T] = queue.Queue(maxsize=depth)
        self._hold = threading.Event()
        self._go = threading.Event()
        self._go.set()
        self._parked = threading.Event()
        self._ended = threading.Event()
        self._closed = False

    # -- the batching thread --

    def put(self, item: T) -> bool:
        """Wait for room (the consumer drains until `finished`); False once the consumer closed."""
        while not self._closed:
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def checkpoint(self, stop: threading.Event) -> None:
        """Once per turn: park here while a pause is asked for."""
        if not self._hold.is_set():
            return
        self._parked.set()
        while not self._go.wait(0.1) and not stop.is_set() and not self._closed:
            pass

    def end(self) -> None:
        """The batching thread is done: nothing more will be put."""
        self._ended.set()

    # -- the consuming thread --

    def get(self, timeout: float) -> T | None:
        try:
            return self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
        except queue.Empty:
            return None

    def finished(self) -> bool:
        return self._ended.is_set() and self._queue.empty()

    def pause(self, consume: Callable[[T], None]) -> None:
        """Park the batching thread at its next turn; what it hands over meanwhile goes to `consume`."""
        self._parked.clear()
        self._go.clear()
        self._hold.set()
        while not (self._parked.is_set() or self._ended.is_set()):
            if (item := self.get(0.005)) is not None:
                consume(item)
        while (item := self.get(0)) is not None:
            consume(item)

    def resume(self) -> None:
        self._hold.clear()
        self._go.set()

    def close(self) -> None:
        """The consumer stops (its loop ended or failed): a waiting producer gives up."""
        self._closed = True
        self.resume()
