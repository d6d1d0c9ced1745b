"""The edge keeps a rate-limited sample of each camera's frames as JPEGs, only when switched on."""

import time
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest

from contract.frames import Frame
from edge.capture.queues import Captured, FrameHub
from edge.sampling import sampling_hub
from edge.sampling.hub import SamplingHub
from edge.sampling.sampler import FrameSampler

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC).timestamp()


def _frame(camera: str, index: int, t: float) -> Frame:
    image = np.full((36, 64, 3), index % 255, np.uint8)
    return Frame(camera_id=camera, index=index, timestamp=t, image=image)


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_sampler_keeps_one_frame_per_interval_and_camera_up_to_the_daily_cap(tmp_path: Path) -> None:
    sampler = FrameSampler("FAC-001", tmp_path, interval_s=1.0, max_per_day=3)
    for i in range(50):  # 5 s at 10 fps on two cameras
        for camera in ("cam-1", "cam-2"):
            sampler.offer(_frame(camera, i, T0 + i / 10))
    sampler.offer(_frame("cam-1", 999, T0 + 86_400))  # the next day has its own cap
    sampler.close()
    files = _files(tmp_path)
    assert files == [
        "FAC-001/cam-1/2026-12-01/090000.000000-0.jpg",
        "FAC-001/cam-1/2026-12-01/090001.000000-10.jpg",
        "FAC-001/cam-1/2026-12-01/090002.000000-20.jpg",
        "FAC-001/cam-1/2026-12-02/090000.000000-999.jpg",
        "FAC-001/cam-2/2026-12-01/090000.000000-0.jpg",
        "FAC-001/cam-2/2026-12-01/090001.000000-10.jpg",
        "FAC-001/cam-2/2026-12-01/090002.000000-20.jpg",
    ]
    image = cv2.imread(str(tmp_path / files[1]))
    assert image.shape == (36, 64, 3) and abs(int(image.mean()) - 10) <= 2
    assert sampler.counts["written"] == 7 and not sampler.counts["failed"]


def test_hub_samples_taken_frames_only_when_switched_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WV_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("WV_MODEL_STORE", raising=False)
    monkeypatch.delenv("WV_FRAME_SAMPLING", raising=False)
    assert type(sampling_hub("FAC-001")) is FrameHub
    monkeypatch.setenv("WV_FRAME_SAMPLING", "true")
    hub = sampling_hub("FAC-001")
    assert isinstance(hub, SamplingHub)
    queue = hub.add("cam-1", "every", 8)
    for i in range(3):
        queue.put(Captured(_frame("cam-1", i, T0 + i * 60), time.monotonic(), 0.0))
    with hub.cond:
        taken = hub.take(8, budget_s=10.0)
    hub.close()  # flushes the sampler
    assert [c.frame.index for c in taken] == [0, 1, 2]
    assert len(_files(tmp_path / "models" / "unlabeled" / "FAC-001" / "cam-1")) == 3
