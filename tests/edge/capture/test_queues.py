"""Drop policies: `latest` drops stale frames (counted), `every` never drops and blocks the reader."""

from __future__ import annotations

import threading
import time

import numpy as np

from contract.frames import Frame
from edge.capture.queues import Captured, FrameHub


def captured(camera: str, i: int, at: float | None = None) -> Captured:
    frame = Frame(camera, i, 1000.0 + i, np.zeros((4, 4, 3), np.uint8))
    return Captured(frame, time.monotonic() if at is None else at, 0.1)


def test_latest_keeps_the_newest_frames_and_counts_stale_drops():
    hub = FrameHub()
    q = hub.add("cam", "latest", 2)
    for i in range(5):
        q.put(captured("cam", i))
    with hub.cond:
        taken = hub.take(10, budget_s=10)
    assert [c.frame.index for c in taken] == [3, 4]
    assert hub.drops[("cam", "stale")] == 3


def test_latest_drops_frames_older_than_the_budget_when_the_batcher_reaches_them():
    hub = FrameHub()
    q = hub.add("cam", "latest", 4)
    now = time.monotonic()
    q.put(captured("cam", 0, at=now - 0.5))
    q.put(captured("cam", 1, at=now))
    with hub.cond:
        assert [c.frame.index for c in hub.take(10, budget_s=0.2, now=now)] == [1]
    assert hub.drops[("cam", "over_budget")] == 1


def test_every_blocks_the_reader_instead_of_dropping():
    hub = FrameHub()
    q = hub.add("cam", "every", 2)
    q.put(captured("cam", 0))
    q.put(captured("cam", 1))
    done = threading.Event()
    threading.Thread(target=lambda: (q.put(captured("cam", 2)), done.set()), daemon=True).start()
    assert not done.wait(0.3)  # backpressure: the third frame waits for space
    with hub.cond:
        first = hub.take(1, budget_s=0.0)  # `every` frames are never too old to process
    assert done.wait(2) and [c.frame.index for c in first] == [0]
    with hub.cond:
        assert [c.frame.index for c in hub.take(10, budget_s=0.0)] == [1, 2]
    assert not hub.drops


def test_batches_take_the_oldest_frames_across_cameras():
    hub = FrameHub()
    a, b = hub.add("a", "every", 8), hub.add("b", "every", 8)
    t = time.monotonic()
    for i in range(3):
        a.put(captured("a", i, at=t + 2 * i))
        b.put(captured("b", i, at=t + 2 * i + 1))
    with hub.cond:
        taken = hub.take(4, budget_s=100)
    assert [(c.frame.camera_id, c.frame.index) for c in taken] == [("a", 0), ("b", 0), ("a", 1), ("b", 1)]


def test_closing_the_hub_releases_a_blocked_reader():
    hub = FrameHub()
    q = hub.add("cam", "every", 1)
    q.put(captured("cam", 0))
    result: list[bool] = []
    t = threading.Thread(target=lambda: result.append(q.put(captured("cam", 1))))
    t.start()
    hub.close()
    t.join(2)
    assert result == [False]
