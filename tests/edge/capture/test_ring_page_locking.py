"""The edge page-locks the frames in decode workers' shared memory for the GPU, slot by slot, and
unlocks each exactly once when the ring goes (camera removed, worker restarted, pool stopped).

CUDA's registration (cudaHostRegister/cudaHostUnregister) is not available here: `HostPins` is
given functions that record the calls instead; everything around them is the real code."""

from __future__ import annotations

import mmap
import os
import signal
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from edge.backends.torch_device import HostPins
from edge.capture.queues import FrameHub
from edge.capture.ring import FrameRing
from edge.capture.workers import DecodePool
from edge.config import CameraConfig
from tests.edge.capture.test_decode_workers import take_all, wait_for, write_clip

PAGE = mmap.PAGESIZE


class CudaRegistrations:
    """Stands in for the CUDA runtime's host registration: records calls, refuses overlaps and
    unknown addresses as it does, and can be told to fail."""

    def __init__(self, fail: str | None = None) -> None:
        self.fail = fail
        self.live: dict[int, int] = {}
        self.registered: Counter[int] = Counter()
        self.unregistered: Counter[int] = Counter()

    def register(self, address: int, nbytes: int) -> str | None:
        if self.fail:
            return self.fail
        if any(a < address + nbytes and address < a + n for a, n in self.live.items()):
            return "cudaErrorHostMemoryAlreadyRegistered"
        self.live[address] = nbytes
        self.registered[address] += 1
        return None

    def unregister(self, address: int) -> str | None:
        if self.live.pop(address, None) is None:
            return "cudaErrorHostMemoryNotRegistered"
        self.unregistered[address] += 1
        return None

    def pins(self) -> HostPins:
        return HostPins(self.register, self.unregister)


def test_a_slot_is_locked_once_per_frame_size_and_everything_unlocked_once_on_close():
    cuda = CudaRegistrations()
    pins = cuda.pins()
    ring = FrameRing.create("cam", slots=3, slot_bytes=4 * PAGE, locker=pins)
    small = ring.view(0, (10, PAGE // 10, 1))  # under a page
    for _ in range(3):
        ring.view(0, small.shape)
    ring.view(1, (2 * PAGE,))
    assert sorted(cuda.live.values()) == [PAGE, 2 * PAGE]
    ring.view(0, (3 * PAGE,))  # a larger frame in slot 0: its range is locked again, larger
    assert sorted(cuda.live.values()) == [2 * PAGE, 3 * PAGE]
    assert pins.covers(ring.view(0, (3 * PAGE,))) and not pins.covers(np.zeros(PAGE, np.uint8))
    assert ring.locked_bytes == 5 * PAGE == pins.pinned_bytes
    del small
    ring.close()
    assert not cuda.live and pins.pinned_bytes == 0
    assert cuda.unregistered == cuda.registered  # each registration undone once, nothing twice
    assert sum(cuda.registered.values()) == 3


def test_locking_that_fails_leaves_the_frames_unlocked_and_is_not_tried_again():
    cuda = CudaRegistrations(fail="CUDA error 712")
    pins = cuda.pins()
    ring = FrameRing.create("cam", slots=2, slot_bytes=PAGE, locker=pins)
    view = ring.view(0, (PAGE,))
    cuda.fail = None
    ring.view(1, (PAGE,))
    assert pins.failed == "CUDA error 712" and not cuda.registered and not pins.covers(view)
    del view
    ring.close()
    assert not cuda.unregistered


def test_slots_must_be_whole_pages_to_be_locked():
    with pytest.raises(ValueError, match="slot_bytes 100 must be whole pages"):
        FrameRing.create("cam", slots=2, slot_bytes=100, locker=CudaRegistrations().pins())


def test_frames_through_decode_workers_are_locked_and_unlocked_once_the_camera_is_removed(tmp_path: Path):
    cuda = CudaRegistrations()
    pins = cuda.pins()
    hub = FrameHub()
    pool = DecodePool(hub, workers=1, slot_bytes=64 * 96 * 3, locker=pins)  # rounded up to whole pages
    try:
        clip = write_clip(tmp_path / "loop.avi", 10)
        reader = pool.reader(
            CameraConfig(id="cam", source=str(tmp_path / "loop.avi"), policy="latest", restart_at_end=True)
        )
        reader.start()
        wait_for(lambda: reader.counters["frames"] >= 30 and hub.pending() == 1)
        item = take_all(hub)[0]
        assert pins.covers(item.frame.image)
        assert np.array_equal(item.frame.image, clip[item.frame.index])
        assert set(cuda.live.values()) == {64 * 96 * 3 + (-64 * 96 * 3) % PAGE}
        item.done()
        os.kill(pool.workers[0].process.pid, signal.SIGKILL)  # the camera moves to a new ring
        wait_for(lambda: pool.counters["worker_restarts"] == 1)
        wait_for(lambda: sum(cuda.unregistered.values()) >= 1 and len(cuda.live) >= 1)
        reader.stop()
        reader.join(10)
        pool.detach(reader)
        assert not cuda.live and pins.pinned_bytes == 0
        assert cuda.unregistered == cuda.registered
    finally:
        pool.stop()
    assert cuda.unregistered == cuda.registered  # stopping the pool unlocked nothing twice
