"""Cameras decoded in worker processes hand their frames over through shared memory."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.capture.queues import Captured, FrameHub
from edge.capture.workers import DecodePool, RemoteReader
from edge.config import CameraConfig


def write_clip(path: Path, frames: int) -> list[np.ndarray]:
    """An MJPG clip whose frames differ; returns the frames as OpenCV decodes them."""
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (96, 64))
    for i in range(frames):
        image = np.zeros((64, 96, 3), np.uint8)
        cv2.putText(image, str(i), (10, 50), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (255, 255, 255), 2)
        out.write(image)
    out.release()
    cap = cv2.VideoCapture(str(path))
    decoded = []
    while (ok_image := cap.read())[0]:
        decoded.append(ok_image[1])
    cap.release()
    return decoded


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


@pytest.fixture
def hub() -> FrameHub:
    return FrameHub()


@pytest.fixture
def pool(hub: FrameHub) -> Iterator[DecodePool]:
    pool = DecodePool(hub, workers=1, slot_bytes=64 * 96 * 3)
    yield pool
    pool.stop()


def looping_camera(tmp_path: Path, pool: DecodePool) -> RemoteReader:
    """A live-like camera (`latest`) replaying a 10-frame clip in a loop, started."""
    write_clip(tmp_path / "loop.avi", 10)
    reader = pool.reader(
        CameraConfig(id="cam", source=str(tmp_path / "loop.avi"), policy="latest", restart_at_end=True)
    )
    reader.start()
    return reader


def take_all(hub: FrameHub) -> list[Captured]:
    with hub.cond:
        items = hub.take(1000, float("inf"))
    return items


def test_every_frame_of_two_cameras_arrives_intact_through_a_few_shared_slots(
    tmp_path: Path, hub: FrameHub, pool: DecodePool
):
    clips = {f"cam-{i}": write_clip(tmp_path / f"{i}.avi", 25 + i) for i in range(2)}
    readers = [
        pool.reader(CameraConfig(id=cam, source=str(tmp_path / f"{i}.avi"), policy="every", queue_size=2))
        for i, cam in enumerate(clips)
    ]
    for r in readers:
        r.start()
    seen: dict[str, list[int]] = {cam: [] for cam in clips}
    while not all(r.finished.is_set() for r in readers) or hub.pending():
        for item in take_all(hub):  # 4 slots per camera: the clip goes through only if slots come back
            frame = item.frame
            assert np.array_equal(frame.image, clips[frame.camera_id][frame.index])
            seen[frame.camera_id].append(frame.index)
            item.done()
        time.sleep(0.005)
    assert seen == {cam: list(range(len(frames))) for cam, frames in clips.items()}
    assert {r.camera_id: r.counters["frames"] for r in readers} == {"cam-0": 25, "cam-1": 26}
    assert not hub.drops


def test_a_live_camera_nobody_keeps_up_with_drops_stale_frames_counted_for_it(
    tmp_path: Path, hub: FrameHub, pool: DecodePool
):
    reader = looping_camera(tmp_path, pool)
    wait_for(lambda: reader.counters["frames"] >= 60)
    assert hub.drops[("cam", "stale")] >= 40  # one queued frame, the rest pushed out or never copied
    wait_for(lambda: hub.pending() == 1)
    reader.stop()
    reader.join(5)
    assert not reader.alive


def test_a_decode_worker_that_dies_is_restarted_and_its_camera_reads_on(
    tmp_path: Path, hub: FrameHub, pool: DecodePool
):
    reader = looping_camera(tmp_path, pool)
    wait_for(lambda: reader.counters["frames"] >= 10)
    os.kill(pool.workers[0].process.pid, signal.SIGKILL)
    wait_for(lambda: pool.counters["worker_restarts"] == 1)
    before = reader.counters["frames"]
    wait_for(lambda: reader.counters["frames"] >= before + 10)
    assert reader.counters["reconnects"] >= 1
    take_all(hub)[-1].done()
