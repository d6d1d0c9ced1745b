"""Camera readers reconnect with backoff when a source fails and stop at the end of a file."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from contract.frames import Frame
from edge.capture.queues import FrameHub
from edge.capture.reader import CameraReader
from edge.retry import Backoff
from edge.sources.base import EndOfStream, FrameSource
from edge.sources.factory import open_source


def write_video(path: Path, frames: int) -> None:
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (64, 48))
    for i in range(frames):
        out.write(np.full((48, 64, 3), i * 10 % 255, np.uint8))
    out.release()


def test_a_missing_file_is_retried_with_backoff_and_picked_up_once_it_appears(tmp_path: Path):
    clip = tmp_path / "clip.avi"
    hub = FrameHub()
    reader = CameraReader(
        open_source(f"file://{clip}", "cam"), hub.add("cam", "every", 64), Backoff(0.01, 0.05)
    )
    reader.start()
    time.sleep(0.3)
    assert reader.counters["reconnects"] >= 2 and reader.counters["frames"] == 0
    write_video(clip, 5)
    assert reader.finished.wait(5)
    assert reader.counters["frames"] == 5
    assert hub.pending() == 5


def test_restart_at_end_loops_a_recorded_clip(tmp_path: Path):
    clip = tmp_path / "loop.avi"
    write_video(clip, 3)
    hub = FrameHub()
    reader = CameraReader(open_source(f"file://{clip}", "cam"), hub.add("cam", "latest", 2), Backoff(), True)
    reader.start()
    deadline = time.monotonic() + 5
    while reader.counters["frames"] < 9 and time.monotonic() < deadline:
        time.sleep(0.01)
    reader.stop()
    reader.join(2)
    assert reader.counters["frames"] >= 9 and hub.drops[("cam", "stale")] > 0


class BrokenCamera(FrameSource):
    """A camera that sends malformed frames and whose decoder crashes once."""

    def __init__(self) -> None:
        super().__init__("broken://", "cam")
        self.i = 0

    def _open(self) -> None:
        pass

    def _read(self) -> Frame:
        self.i += 1
        if self.i == 3:
            raise cv2.error("decoder crashed")
        if self.i > 8:
            raise EndOfStream("done")
        images = [
            np.zeros((48, 64, 3), np.uint8),
            np.zeros((48, 64), np.uint8),
            np.zeros((0, 0, 3), np.uint8),
        ]
        return Frame("cam", self.i, time.time(), images[self.i % 3])

    def _close(self) -> None:
        pass


def test_malformed_frames_and_decoder_crashes_are_counted_and_skipped():
    hub = FrameHub()
    reader = CameraReader(BrokenCamera(), hub.add("cam", "every", 64), Backoff(0.001, 0.01))
    reader.start()
    assert reader.finished.wait(5)
    assert reader.counters["read_errors"] == 1 and reader.counters["reconnects"] == 1
    assert hub.drops[("cam", "bad_frame")] == 6  # 2-D or empty images: frames 1, 2, 4, 5, 7, 8
    assert hub.pending() == reader.counters["frames"] == 1  # frame 6 is a proper BGR image
