"""The frame hub the edge's inference loop takes its batches from, offering each frame to the sampler."""

from __future__ import annotations

from typing import Any

from edge.capture.queues import Captured, FrameHub
from edge.sampling.sampler import FrameSampler
from edge.sampling.settings import FrameSamplingSettings


class SamplingHub(FrameHub):
    """A FrameHub whose taken frames are offered to a `FrameSampler` while their pixels are still
    held (a decode worker's shared slot is released only after the batch is processed)."""

    def __init__(self, sampler: FrameSampler) -> None:
        super().__init__()
        self.sampler = sampler

    def take(self, *args: Any, **kwargs: Any) -> list[Captured]:
        taken = super().take(*args, **kwargs)
        for item in taken:
            self.sampler.offer(item.frame)
        return taken

    def close(self) -> None:
        super().close()
        self.sampler.close()


def sampling_hub(facility: str) -> FrameHub:
    """The edge's frame hub: sampling when ``WV_FRAME_SAMPLING`` is on, a plain FrameHub otherwise."""
    settings = FrameSamplingSettings.load()
    if not settings.frame_sampling:
        return FrameHub()
    sampler = FrameSampler(
        facility,
        settings.frames_dir,
        settings.frame_sample_interval_s,
        settings.frame_sample_max_per_day,
        settings.frame_sample_jpeg_quality,
    )
    return SamplingHub(sampler)
