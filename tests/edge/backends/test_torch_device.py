"""The torch engine's device work, run on the CPU: preprocessing matches the OpenCV path, batches
are padded to graph buckets, and the buckets' graphs are captured once."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.backends.torch_device import DevicePreprocess, GraphRunner, buckets
from edge.model.preprocess import preprocess
from edge.sources.factory import open_source

torch = pytest.importorskip("torch")


def test_device_preprocessing_matches_the_opencv_path_for_mixed_frame_sizes():
    with open_source("synthetic://seed=1&realtime=0", "cam") as source:
        large = [source.read().image for _ in range(3)]  # 640x360: shrunk (area)
    small = [cv2.resize(im, (160, 96)) for im in large[:2]]  # enlarged (bilinear)
    images = [large[0], small[0], large[1], small[1], large[2]]
    prep = DevicePreprocess(torch, torch.device("cpu"), torch.float32, (224, 384))
    got = prep(images).numpy()
    want = preprocess(images, (224, 384))
    assert got.shape == want.shape
    # within OpenCV's own rounding to whole grey levels (one level is 1/255/std ≈ 0.017 here)
    assert np.abs(got - want).max() < 0.017


def test_batches_are_padded_to_their_bucket_and_chunked_past_the_largest():
    captured: list[int] = []
    weight = torch.arange(3, dtype=torch.float32).view(1, 3, 1, 1)

    def capture(bucket: int):
        captured.append(bucket)
        static = torch.zeros((bucket, 3, 2, 2))
        return static, lambda: {"out": (static * weight).sum(dim=1)}

    runner = GraphRunner(capture, largest=12)
    assert buckets(12) == [1, 2, 4, 8, 12]
    x = torch.randn(30, 3, 2, 2)
    chunks = runner(x)
    assert [len(c["out"]) for c in chunks] == [12, 12, 6]
    assert torch.allclose(torch.cat([c["out"] for c in chunks]), (x * weight).sum(dim=1))
    runner(torch.randn(5, 3, 2, 2))
    assert captured == [12, 8]  # 6 → bucket 8 (once), 5 → bucket 8 again: no new capture


def test_frames_in_locked_memory_are_uploaded_from_it_and_give_the_same_batch():
    """Frames in page-locked shared memory skip the pinned buffer; frames elsewhere in the same
    batch still go through it; the batch is the same either way (run on the CPU)."""
    from edge.backends.torch_device import HostPins
    from edge.capture.ring import FrameRing, page_aligned

    with open_source("synthetic://seed=2&realtime=0", "cam") as source:
        frames = [source.read().image for _ in range(4)]
    pins = HostPins(lambda address, nbytes: None, lambda address: None)
    ring = FrameRing.create("cam", slots=3, slot_bytes=page_aligned(frames[0].nbytes), locker=pins)
    for slot in range(3):
        ring.write(slot, frames[slot])
    images = [
        ring.view(0, frames[0].shape),
        frames[3],
        ring.view(2, frames[2].shape),
        ring.view(1, frames[1].shape),
    ]
    want = DevicePreprocess(torch, torch.device("cpu"), torch.float32, (224, 384))(images)
    got = DevicePreprocess(torch, torch.device("cpu"), torch.float32, (224, 384), pins)(images)
    assert torch.equal(got, want)
    assert pins.counters == {"direct": 3, "staged": 1}
    del images
    ring.close()
    assert pins.pinned_bytes == 0
    DevicePreprocess(torch, torch.device("cpu"), torch.float32, (224, 384), pins)([frames[0]])
    assert pins.counters == {"direct": 3, "staged": 2}
