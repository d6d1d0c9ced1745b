"""Small frames keep every simulator test well under a second."""

from __future__ import annotations

import pytest

from simulator import SimConfig


@pytest.fixture
def small() -> SimConfig:
    return SimConfig(width=320, height=180)
