"""The conveyor simulator: a deterministic camera view of parcels riding a belt, with its answer key.

Two ways to render:
* `render(index)` / `frames()`: one continuous scene. Each zone has its own arrival schedule whose
  k-th package is a pure function of (seed, zone, k), so any frame can be rendered directly and a
  package keeps its id while it crosses the view (tracking tests).
* `render_iid(index)`: an independent random scene per index (belt, lighting, traffic, packages),
  for training sets: frames are i.i.d. and any worker can render any index.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import count

import cv2
import numpy as np

from contract.frames import Box, Frame, PackageTruth
from simulator.catalogue import PackageSpec, sample_package
from simulator.config import HOLDING_ZONE, SIM_EPOCH, SimConfig
from simulator.drift import DriftConfig, resolve_drift
from simulator.packages import Sprite, render_sprite
from simulator.scene import (
    Layout,
    add_sensor_noise,
    apply_lighting,
    belt_period,
    belt_slice,
    build_belt,
    camera_homography,
    sample_lighting,
    warp_image,
    warp_points,
)

MIN_VISIBLE = 0.6
"""A package enters the ground truth once this share of its body is inside the frame."""
_SENSOR_SIGMA = 4.0
_BELT_VARIANTS = 8


@dataclass(frozen=True)
class Placement:
    spec: PackageSpec
    x: int
    y: int


@dataclass
class _Lane:
    """Arrival schedule of one zone: entry times are increasing, so visibility is a bisect."""

    index: int
    rate: float
    entries: list[float] = field(default_factory=list)
    specs: list[PackageSpec] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    ys: list[int] = field(default_factory=list)
    gaps: list[float] = field(default_factory=list)


class ConveyorSimulator:
    """A synthetic camera over a conveyor; same config + seed → identical pixels and truth."""

    def __init__(
        self,
        config: SimConfig | None = None,
        seed: int = 0,
        *,
        camera_id: str = "cam-0",
        start_time: float = SIM_EPOCH,
        drift: str | DriftConfig | None = None,
    ) -> None:
        self.config = config or SimConfig()
        self.seed = int(seed)
        self.camera_id = camera_id
        self.start_time = float(start_time)
        self.drift = resolve_drift(drift)
        cfg = self.config
        self.layout = Layout.from_config(cfg)
        self.damage_mix = self.drift.damage_mix or cfg.damage_mix
        self._period = belt_period(cfg)
        self._belts: dict[int, np.ndarray] = {}
        self._gain = sample_lighting(self._rng(3), cfg.lighting_variation, self.drift).gain_map(
            cfg.width, cfg.height
        )
        self._homography = (
            camera_homography(cfg.width, cfg.height, self.drift.perspective, self.drift.rotation_deg)
            if self.drift.warps
            else None
        )
        weights = [0.4 if z == HOLDING_ZONE else 1.0 for z in cfg.zones]
        self._lanes = [_Lane(i, cfg.arrival_rate * w / sum(weights)) for i, w in enumerate(weights)]
        self._sprites: dict[str, Sprite] = {}

    def _rng(self, *tags: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, *tags])

    def _belt(self, variant: int) -> np.ndarray:
        if variant not in self._belts:
            self._belts[variant] = build_belt(self.config, self._rng(0, variant))
        return self._belts[variant]

    # -- continuous scene -------------------------------------------------------------------

    def frames(self, n: int | None = None, start: int = 0) -> Iterator[Frame]:
        """`n` consecutive frames from `start` (forever when `n` is None)."""
        indices = count(start) if n is None else range(start, start + n)
        for index in indices:
            yield self.render(index)

    def timestamp(self, index: int) -> float:
        return self.start_time + index / self.config.fps

    def render(self, index: int) -> Frame:
        """Frame `index` of the continuous scene (random access; neighbours share package ids)."""
        cfg = self.config
        t = index / cfg.fps
        shift = round(cfg.speed_px * t)
        placements = [p for lane in self._lanes for p in self._visible(lane, t, shift)]
        live = {p.spec.package_id for p in placements}
        self._sprites = {k: v for k, v in self._sprites.items() if k in live}
        background = belt_slice(self._belt(0), cfg.width, shift)
        image, truth = self._compose(background, placements, self._gain, self._rng(2, index), self._sprites)
        return Frame(self.camera_id, index, self.timestamp(index), image, truth)

    def render_empty(self, index: int) -> Frame:
        """Frame `index` of the continuous scene with the packages removed: the bare belt under the
        same lighting, camera and noise (a background-subtraction reference)."""
        cfg = self.config
        shift = round(cfg.speed_px * index / cfg.fps)
        background = belt_slice(self._belt(0), cfg.width, shift)
        image, _ = self._compose(background, [], self._gain, self._rng(2, index), {})
        return Frame(self.camera_id, index, self.timestamp(index), image, [])

    def _visible(self, lane: _Lane, t: float, shift: int) -> list[Placement]:
        cfg = self.config
        v = cfg.speed_px
        while not lane.entries or lane.entries[-1] <= t:
            self._schedule_next(lane)
        horizon = t - (cfg.width + 320 * cfg.scale) / v
        lo = bisect.bisect_left(lane.entries, horizon)
        hi = bisect.bisect_right(lane.entries, t)
        out = []
        for k in range(lo, hi):
            x = shift - lane.offsets[k]
            if x < cfg.width and x + lane.specs[k].extent[0] > 0:
                out.append(Placement(lane.specs[k], x, lane.ys[k]))
        return out

    def _schedule_next(self, lane: _Lane) -> None:
        """Append the lane's next package: it enters once the previous one has moved clear."""
        cfg = self.config
        v = cfg.speed_px
        k = len(lane.entries)
        rng = self._rng(1, lane.index, k)
        n = k * len(cfg.zones) + lane.index
        spec = sample_package(
            rng,
            cfg,
            f"{self.camera_id}-{self.seed}-{n:06d}",
            cfg.zones[lane.index],
            self.damage_mix,
            self.drift.novel_fraction,
        )
        gap = float(rng.exponential(1 / lane.rate))
        if k == 0:
            entry = -(cfg.width / v) * (1 + float(rng.uniform(0.0, 0.5)))
        else:
            prev_w = lane.specs[-1].extent[0]
            entry = lane.entries[-1] + max((prev_w + 12 * cfg.scale) / v, lane.gaps[-1])
        lane.entries.append(entry)
        lane.specs.append(spec)
        lane.offsets.append(round(v * entry) + spec.extent[0])
        lane.ys.append(self._lane_y(rng, lane.index, spec))
        lane.gaps.append(gap)

    def _lane_y(self, rng: np.random.Generator, zone_index: int, spec: PackageSpec) -> int:
        top, bottom = self.layout.band(zone_index)
        slack = max(0, bottom - top - spec.extent[1])
        return top + slack // 2 + round(float(rng.uniform(-0.4, 0.4)) * slack)

    # -- independent training frames -------------------------------------------------------

    def render_iid(self, index: int) -> Frame:
        """An independent random scene for training: new belt shift, lighting, traffic, packages."""
        cfg = self.config
        rng = self._rng(4, index)
        placements: list[Placement] = []
        gap_mean = float(rng.uniform(20, 260)) * cfg.scale
        for zi, zone in enumerate(cfg.zones):
            if rng.random() < 0.08:
                continue
            x = -int(rng.uniform(0, 110) * cfg.scale)
            while x < cfg.width:
                pid = f"{self.camera_id}-{self.seed}-i{index:07d}-{len(placements):02d}"
                spec = sample_package(rng, cfg, pid, zone, self.damage_mix, self.drift.novel_fraction)
                placements.append(Placement(spec, x, self._lane_y(rng, zi, spec)))
                x += spec.extent[0] + int(6 * cfg.scale + rng.exponential(gap_mean))
        belt = self._belt(int(rng.integers(_BELT_VARIANTS)))
        background = belt_slice(belt, cfg.width, int(rng.integers(self._period)))
        gain = sample_lighting(rng, cfg.lighting_variation, self.drift).gain_map(cfg.width, cfg.height)
        image, truth = self._compose(background, placements, gain, rng, {})
        return Frame(self.camera_id, index, self.timestamp(index), image, truth)

    # -- compositing ---------------------------------------------------------------------------

    def _compose(
        self,
        background: np.ndarray,
        placements: list[Placement],
        gain: np.ndarray,
        rng: np.random.Generator,
        sprites: dict[str, Sprite],
    ) -> tuple[np.ndarray, list[PackageTruth]]:
        cfg, drift = self.config, self.drift
        frame = background.copy()
        truth: list[PackageTruth] = []
        for p in placements:
            sprite = sprites.get(p.spec.package_id)
            if sprite is None:
                sprite = sprites[p.spec.package_id] = render_sprite(p.spec)
            _blend(frame, sprite, p.x, p.y)
            box, frac = sprite.visible_box(p.x, p.y, cfg.width)
            if box is not None and frac >= MIN_VISIBLE:
                if self._homography is not None:
                    box = self._warp_box(sprite, p, box)
                if box is not None:
                    truth.append(_truth(p.spec, box))
        frame = apply_lighting(frame, gain)
        if self._homography is not None:
            frame = warp_image(frame, self._homography)
        if drift.blur_sigma > 0:
            frame = cv2.GaussianBlur(frame, (0, 0), drift.blur_sigma)
        frame = add_sensor_noise(frame, _SENSOR_SIGMA * cfg.noise * drift.noise_scale, rng)
        return frame, truth

    def _warp_box(
        self, sprite: Sprite, p: Placement, box: tuple[int, int, int, int]
    ) -> tuple[int, int, int, int] | None:
        """The visible body outline mapped through the camera tilt, boxed and clipped."""
        assert self._homography is not None
        w, h = self.config.width, self.config.height
        pts = sprite.outline(box[0] - p.x, box[2] - p.x) + np.array([p.x, p.y], np.float32)
        q = warp_points(pts, self._homography)
        x1, y1 = np.clip(np.floor(q.min(axis=0)), 0, [w, h])
        x2, y2 = np.clip(np.ceil(q.max(axis=0)), 0, [w, h])
        if x2 - x1 < 4 or y2 - y1 < 4:
            return None
        return int(x1), int(y1), int(x2), int(y2)


def _blend(frame: np.ndarray, sprite: Sprite, x: int, y: int) -> None:
    """Alpha-composite a sprite at (x, y), clipped to the frame."""
    fh, fw = frame.shape[:2]
    sw, sh = sprite.size
    x0, y0, x1, y1 = max(0, x), max(0, y), min(fw, x + sw), min(fh, y + sh)
    if x1 <= x0 or y1 <= y0:
        return
    sx, sy = x0 - x, y0 - y
    roi = frame[y0:y1, x0:x1]
    inv = sprite.inv_alpha[sy : sy + y1 - y0, sx : sx + x1 - x0]
    premult = sprite.premult[sy : sy + y1 - y0, sx : sx + x1 - x0]
    roi[:] = cv2.add(cv2.multiply(roi, inv, scale=1 / 255), premult)


def _truth(spec: PackageSpec, box: tuple[int, int, int, int]) -> PackageTruth:
    return PackageTruth(
        package_id=spec.package_id,
        sku=spec.sku.sku,
        package_type=spec.sku.package_type,
        condition=spec.condition,
        box=Box(*(float(v) for v in box)),
        zone=spec.zone,
        expected_zone=spec.sku.expected_zone,
    )
