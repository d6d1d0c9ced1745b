"""The hand-over between camera readers and the inference loop, with the per-camera drop policy.

`latest`: the queue keeps the newest `capacity` frames; a frame pushed out by a newer one is
dropped as `stale`, and a frame that already waited longer than the latency budget when the
batcher reaches it is dropped as `over_budget` (a late answer about an old frame helps nobody).
`every`: nothing is dropped; a full queue blocks the reader (backpressure on the source).
All queues share one condition variable so the batcher can wait for "any camera has a frame".
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from contract.frames import Frame


@dataclass
class Captured:
    """A frame plus when it was captured (monotonic clock) and how long decoding took."""

    frame: Frame
    captured_at: float
    """Monotonic capture time, the start of the frame's end-to-end latency (see CameraReader)."""
    decode_ms: float
    ready_at: float = field(default_factory=time.monotonic)
    release: Callable[[], None] | None = None
    """Gives the frame's pixels back to their decoder (a shared-memory slot); None for own arrays."""

    def done(self) -> None:
        """The pixels are no longer needed: processed, or dropped (idempotent)."""
        if self.release is not None:
            release, self.release = self.release, None
            release()


class FrameHub:
    """The shared condition plus every camera's queue; drops are counted by (camera, reason)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.queues: dict[str, CameraQueue] = {}
        self.drops: Counter[tuple[str, str]] = Counter()
        self.closed = False

    def add(self, camera_id: str, policy: str, capacity: int) -> CameraQueue:
        q = CameraQueue(self, camera_id, policy, capacity)
        with self.cond:
            self.queues[camera_id] = q
        return q

    def remove(self, camera_id: str) -> None:
        """A camera taken out of service: frames still queued are dropped (`camera_removed`)."""
        with self.cond:
            q = self.queues.pop(camera_id, None)
            for item in q.items if q is not None else ():
                item.done()
                self.drop(camera_id, "camera_removed")

    def drop(self, camera_id: str, reason: str, n: int = 1) -> None:
        self.drops[(camera_id, reason)] += n

    def depth(self) -> int:
        with self.cond:
            return sum(len(q.items) for q in self.queues.values())

    def close(self) -> None:
        """Wake every waiter; blocked readers give up their frame (shutdown)."""
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def take(self, limit: int, budget_s: float, now: float | None = None) -> list[Captured]:
        """Remove up to `limit` frames, oldest capture first across cameras (call with `cond` held).

        Frames of `latest` cameras older than `budget_s` are dropped as `over_budget` on the way.
        """
        now = time.monotonic() if now is None else now
        for q in self.queues.values():
            if q.policy == "latest":
                while q.items and now - q.items[0].captured_at > budget_s:
                    q.items.popleft().done()
                    self.drop(q.camera_id, "over_budget")
        heads = sorted(
            (item.captured_at, cam, i) for cam, q in self.queues.items() for i, item in enumerate(q.items)
        )[:limit]
        taken: list[Captured] = []
        for cam in {cam for _, cam, _ in heads}:
            n = sum(1 for _, c, _ in heads if c == cam)
            q = self.queues[cam]
            taken.extend(q.items.popleft() for _ in range(n))
        if taken:
            self.cond.notify_all()  # space for blocked `every` readers
        return sorted(taken, key=lambda c: c.captured_at)

    def oldest(self) -> float | None:
        """Capture time of the oldest waiting frame (call with `cond` held)."""
        times = [q.items[0].captured_at for q in self.queues.values() if q.items]
        return min(times) if times else None

    def pending(self) -> int:
        return sum(len(q.items) for q in self.queues.values())


class CameraQueue:
    def __init__(self, hub: FrameHub, camera_id: str, policy: str, capacity: int) -> None:
        if policy not in ("latest", "every"):
            raise ValueError(f"unknown drop policy {policy!r}")
        self.hub = hub
        self.camera_id = camera_id
        self.policy = policy
        self.capacity = capacity
        self.items: deque[Captured] = deque()

    def put(self, item: Captured) -> bool:
        """Enqueue per the policy; False when the hub is closed (or closed while an `every` reader waited)."""
        with self.hub.cond:
            if self.hub.closed:  # the loop has drained for the last time: counted as a shutdown drop
                return False
            if self.policy == "latest":
                while len(self.items) >= self.capacity:
                    self.items.popleft().done()
                    self.hub.drop(self.camera_id, "stale")
            else:
                while len(self.items) >= self.capacity and not self.hub.closed:
                    self.hub.cond.wait(0.5)
                if self.hub.closed:
                    return False
            self.items.append(item)
            self.hub.cond.notify_all()
        return True

    def drop(self, reason: str, n: int = 1) -> None:
        self.hub.drop(self.camera_id, reason, n)

    def drain(self) -> Iterable[Captured]:
        with self.hub.cond:
            items, self.items = list(self.items), deque()
        return items
