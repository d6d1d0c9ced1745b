"""Small photo folders for the format tests: three images of different sizes and aspects."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

SIZES = {"wide.jpg": (120, 200), "tall.png": (160, 90), "square.jpg": (64, 64)}
"""name -> (height, width)"""


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in SIZES.items():
        cv2.imwrite(str(folder / name), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    return folder


def records(dataset: Path) -> list[dict]:
    return [json.loads(line) for line in (dataset / "annotations.jsonl").read_text().splitlines()]


def no_partial_left(parent: Path) -> bool:
    return not any(p.name.startswith(".") and ".partial-" in p.name for p in parent.iterdir())


@pytest.fixture(scope="session")
def sim_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four simulator frames written by `wv data`'s writer."""
    from simulator.dataset import write_dataset

    out = tmp_path_factory.mktemp("sim") / "ds"
    write_dataset(out, 4, seed=5)
    return out
