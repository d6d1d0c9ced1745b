"""The static part of the picture: belt, zones, lighting, sensor and camera pose.

The belt is one pre-rendered periodic strip; a frame's background is a slice of it at the belt's
current offset, so moving the belt costs a single copy. Lighting and camera effects are whole-frame
OpenCV calls with maps computed once per scene.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from simulator.config import HOLDING_ZONE, SimConfig
from simulator.drift import DriftConfig
from simulator.textures import grain, sensor_noise_tile, wrap_blur


@dataclass(frozen=True)
class Layout:
    """Where each zone band lies across the belt (rows), top to bottom."""

    width: int
    height: int
    rail: int
    lane_height: int
    zones: tuple[str, ...]

    @classmethod
    def from_config(cls, cfg: SimConfig) -> Layout:
        return cls(cfg.width, cfg.height, cfg.rail_height, cfg.lane_height, cfg.zones)

    def band(self, zone_index: int) -> tuple[int, int]:
        """Top (inclusive) and bottom (exclusive) row of a zone."""
        top = self.rail + zone_index * self.lane_height
        return top, top + self.lane_height

    @property
    def belt_bottom(self) -> int:
        return self.band(len(self.zones) - 1)[1]


def belt_period(cfg: SimConfig) -> int:
    """Length in pixels after which the belt texture repeats (one belt segment between seams)."""
    return max(64, round(288 * cfg.scale))


def build_belt(cfg: SimConfig, rng: np.random.Generator) -> np.ndarray:
    """Render the belt strip (H, W + period, 3): rails, rubber, lane guides, hold area, seams."""
    layout = Layout.from_config(cfg)
    period, h = belt_period(cfg), cfg.height
    tile = np.empty((h, period, 3), np.float32)
    rubber = np.array([58, 60, 62], np.float32) * rng.uniform(0.85, 1.2)
    streaks = wrap_blur(rng.standard_normal((h, period)).astype(np.float32), 1.0)
    streaks = cv2.blur(np.tile(streaks, (1, 3)), (41, 1))[:, period : 2 * period]
    fine = grain(h, period, 0.7, rng)
    tile[:] = rubber
    tile *= (1 + 0.09 * streaks / (streaks.std() + 1e-6) + 0.05 * fine)[..., None]
    _draw_hold_area(tile, layout, cfg)
    _draw_rails(tile, layout)
    _draw_lane_guides(tile, layout, cfg)
    _draw_seam(tile, layout, cfg, rng)
    strip = np.clip(tile, 0, 255).astype(np.uint8)
    reps = -(-(cfg.width + period) // period)
    return np.ascontiguousarray(np.tile(strip, (1, reps, 1))[:, : cfg.width + period])


def _draw_rails(tile: np.ndarray, layout: Layout) -> None:
    r, rest = layout.rail, layout.height - layout.belt_bottom
    tint = np.array([1.0, 1.0, 0.97], np.float32)
    tile[:r] = np.linspace(205, 140, r, dtype=np.float32)[:, None, None] * tint
    tile[layout.belt_bottom :] = np.linspace(130, 195, rest, dtype=np.float32)[:, None, None] * tint
    tile[r - 1 : r + 1] = 35
    tile[layout.belt_bottom - 1 : layout.belt_bottom + 1] = 35


def _draw_lane_guides(tile: np.ndarray, layout: Layout, cfg: SimConfig) -> None:
    t = max(2, round(3 * cfg.scale))
    for i in range(1, len(layout.zones)):
        y = layout.band(i)[0]
        tile[y - t // 2 : y - t // 2 + t] = (188, 190, 192)
        tile[y - t // 2 + t : y - t // 2 + t + 1] *= 0.55


def _draw_hold_area(tile: np.ndarray, layout: Layout, cfg: SimConfig) -> None:
    if HOLDING_ZONE not in layout.zones:
        return
    top, bottom = layout.band(layout.zones.index(HOLDING_ZONE))
    tile[top:bottom] *= np.array([0.95, 1.15, 0.9], np.float32)
    stripe = max(4, round(6 * cfg.scale))
    cols = np.arange(tile.shape[1])
    for y0 in (top + 1, bottom - stripe - 1):
        for dy in range(stripe):
            hazard = ((cols + dy) // max(4, round(8 * cfg.scale))) % 2 == 0
            tile[y0 + dy, hazard] = (20, 190, 235)
            tile[y0 + dy, ~hazard] = (25, 25, 25)


def _draw_seam(tile: np.ndarray, layout: Layout, cfg: SimConfig, rng: np.random.Generator) -> None:
    """A laced splice across the belt: the visible cue that the belt moves."""
    top, bottom = layout.rail + 1, layout.belt_bottom - 1
    x = int(rng.integers(0, tile.shape[1] - 6))
    w = max(3, round(4 * cfg.scale))
    tile[top:bottom, x : x + w] *= 1.35
    step = max(5, round(8 * cfg.scale))
    tile[top:bottom:step, x + 1 : x + w - 1] = 20


def belt_slice(strip: np.ndarray, width: int, offset_px: int) -> np.ndarray:
    """The background for a belt advanced by `offset_px` (content moves right)."""
    period = strip.shape[1] - width
    start = (-offset_px) % period
    return strip[:, start : start + width]


@dataclass(frozen=True)
class Lighting:
    """Scene illumination: overall level, white balance and a smooth spatial gradient."""

    brightness: float
    tint: tuple[float, float, float]
    gradient: tuple[float, float]
    vignette: float

    def gain_map(self, width: int, height: int) -> np.ndarray:
        """Per-pixel BGR gain as uint8 where 128 = 1.0 (for one cv2.multiply)."""
        gw, gh = 32, 18
        xs = np.linspace(-0.5, 0.5, gw, dtype=np.float32)[None, :]
        ys = np.linspace(-0.5, 0.5, gh, dtype=np.float32)[:, None]
        level = 1 + self.gradient[0] * xs + self.gradient[1] * ys - self.vignette * (xs**2 + ys**2) * 2
        small = level[..., None] * (self.brightness * np.array(self.tint, np.float32)) * 128 + 0.5
        small = np.clip(small, 0, 255).astype(np.uint8)
        return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def sample_lighting(rng: np.random.Generator, variation: float, drift: DriftConfig) -> Lighting:
    """A plausible lighting draw, shifted by the drift's brightness and colour temperature."""
    v = variation
    warm = drift.color_temperature
    tint = (
        (1 + rng.uniform(-0.06, 0.06) * v) * (1 - 0.22 * warm),
        (1 + rng.uniform(-0.04, 0.04) * v) * (1 + 0.02 * warm),
        (1 + rng.uniform(-0.06, 0.06) * v) * (1 + 0.2 * warm),
    )
    return Lighting(
        brightness=(1 + rng.uniform(-0.15, 0.15) * v) * drift.brightness,
        tint=tint,
        gradient=(float(rng.uniform(-0.2, 0.2) * v), float(rng.uniform(-0.15, 0.15) * v)),
        vignette=float(rng.uniform(0.0, 0.35) * v),
    )


def apply_lighting(img: np.ndarray, gain: np.ndarray) -> np.ndarray:
    return cv2.multiply(img, gain, scale=1 / 128)


def add_sensor_noise(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Add Gaussian-like noise of std `sigma` grey levels from a cached tile at a random offset."""
    if sigma <= 0:
        return img
    h, w = img.shape[:2]
    oy, ox = (int(v) for v in rng.integers(0, 32, 2))
    crop = sensor_noise_tile(h, w)[oy : oy + h, ox : ox + w]
    s = sigma / 16.0
    return cv2.addWeighted(img, 1.0, crop, s, -128.0 * s)


def camera_homography(width: int, height: int, perspective: float, rotation_deg: float) -> np.ndarray:
    """Image → image homography of a camera tilted towards the near (bottom) side and rolled."""
    w, h = float(width), float(height)
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    inset, outset = perspective * w / 2, perspective * w / 6
    dst = np.array([[inset, 0], [w - inset, 0], [w + outset, h], [-outset, h]], np.float64)
    a = np.deg2rad(rotation_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    centre = np.array([w / 2, h / 2])
    dst = (dst - centre) @ rot.T + centre
    return cv2.getPerspectiveTransform(src, dst.astype(np.float32))


def warp_image(img: np.ndarray, homography: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    return cv2.warpPerspective(img, homography, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def warp_points(points: np.ndarray, homography: np.ndarray) -> np.ndarray:
    """Map (N, 2) pixel points through the camera homography."""
    return cv2.perspectiveTransform(points.reshape(-1, 1, 2).astype(np.float32), homography).reshape(-1, 2)
