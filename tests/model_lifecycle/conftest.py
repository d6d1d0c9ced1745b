"""Fixtures for the model tests: a handful of simulator frames and a small input size for speed."""

from __future__ import annotations

import pytest

from contract.frames import Frame
from model_lifecycle.sources import SimulatedFrames

SMALL_INPUT = (128, 224)
"""8x14 patches: keeps CPU training and export steps well under a second."""


@pytest.fixture(scope="session")
def sim_frames() -> list[Frame]:
    fn = SimulatedFrames(seed=123)
    return [fn(i) for i in range(8)]
