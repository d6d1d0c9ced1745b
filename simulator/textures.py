"""Pre-rendered noise tiles: per-pixel randomness is cut from these instead of drawn per frame.

Drawing fresh Gaussian noise for every frame costs more than everything else in the renderer;
cropping a cached tile at a random offset looks the same to a detector and is almost free.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

_TILE = 256


@lru_cache(maxsize=8)
def grain_tile(blur: float) -> np.ndarray:
    """Smoothed zero-mean, unit-std float32 noise, tiled 2x2 so any crop up to _TILE is a view."""
    rng = np.random.default_rng(7919 + int(blur * 100))
    tile = rng.standard_normal((_TILE, _TILE)).astype(np.float32)
    if blur > 0:
        tile = wrap_blur(tile, blur)
    tile -= tile.mean()
    tile /= tile.std() + 1e-6
    return np.tile(tile, (2, 2))


def wrap_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur that wraps around the edges, so a blurred tile still tiles seamlessly."""
    pad = int(3 * sigma) + 1
    padded = np.pad(img, [(pad, pad), (pad, pad)] + [(0, 0)] * (img.ndim - 2), mode="wrap")
    return cv2.GaussianBlur(padded, (0, 0), sigma)[pad:-pad, pad:-pad]


def grain(h: int, w: int, blur: float, rng: np.random.Generator) -> np.ndarray:
    """An (h, w) crop of the grain tile at a random offset, wrapping when larger than the tile."""
    tile = grain_tile(blur)
    oy, ox = (int(v) for v in rng.integers(0, _TILE, 2))
    if h > _TILE or w > _TILE:
        tile = np.tile(tile, (h // _TILE + 1, w // _TILE + 1))
    return tile[oy : oy + h, ox : ox + w]


@lru_cache(maxsize=4)
def sensor_noise_tile(h: int, w: int) -> np.ndarray:
    """uint8 Gaussian noise centred on 128 (σ = 16) with a margin for random crops."""
    rng = np.random.default_rng(104729)
    noise = rng.normal(128.0, 16.0, (h + 32, w + 32, 3))
    return np.clip(noise, 0, 255).astype(np.uint8)
