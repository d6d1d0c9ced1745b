"""A two-block detector at 64x96 and a few structured frames: DINO steps in milliseconds on a CPU."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.model.config import get_config
from edge.model.detector import PackageDetector

SIZE = (64, 96)


@pytest.fixture
def small_detector() -> PackageDetector:
    import torch

    torch.manual_seed(0)
    return PackageDetector(get_config("fallback").with_input_size(*SIZE)).eval()


def frame(seed: int, size: tuple[int, int] = SIZE) -> np.ndarray:
    """An RGB uint8 (3, h, w) frame: a few coloured boxes on grey, so crops differ from each other."""
    rng = np.random.default_rng(seed)
    h, w = size
    image = np.full((h, w, 3), 128, np.uint8)
    for _ in range(4):
        y, x = rng.integers(0, h - 12), rng.integers(0, w - 12)
        image[y : y + 12, x : x + 16] = rng.integers(0, 255, 3)
    return image.transpose(2, 0, 1).copy()


@pytest.fixture
def frames() -> list[np.ndarray]:
    return [frame(i) for i in range(8)]


@pytest.fixture
def frames_dir(tmp_path: Path) -> Path:
    """JPEGs laid out as the edges' sampler writes them (two cameras, one day)."""
    for i in range(4):
        path = (
            tmp_path
            / "unlabeled"
            / "FAC-001"
            / f"cam-{i % 2 + 1}"
            / "2026-12-01"
            / f"0900{i:02d}.000000-{i}.jpg"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), frame(i, (180, 320)).transpose(1, 2, 0)[..., ::-1])
    return tmp_path / "unlabeled"
