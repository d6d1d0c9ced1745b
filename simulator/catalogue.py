"""SKU catalogue and per-package draws: what each parcel is, where it should go, how it looks.

A SKU fixes a product's packaging (type, colour, size, tape, label, route/zone); a package is one
physical instance of a SKU with its own jitter, rotation, condition and lane. Drawing the spec
is separate from rendering it so the simulator can plan traffic without rendering pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from simulator.config import HOLDING_ZONE, SimConfig

STYLES = ("standard", "vivid", "patterned", "tote")
"""Appearance families; all but `standard` appear only under drift (novel packaging)."""

_BOX_COLOURS = [(80, 130, 180), (110, 160, 200), (60, 100, 145), (95, 145, 190), (226, 228, 230)]
_BAG_COLOURS = [(150, 150, 152), (228, 228, 230), (28, 28, 32), (140, 112, 92), (188, 190, 195)]
_ENV_COLOURS = [(236, 236, 232), (140, 196, 226), (92, 146, 190), (100, 204, 236)]
_VIVID_COLOURS = [(200, 70, 20), (40, 40, 205), (50, 170, 40), (160, 40, 160), (30, 30, 30), (20, 140, 250)]
_TOTE_COLOURS = [(130, 100, 60), (175, 115, 25), (45, 45, 180), (70, 150, 60)]
_SIZES = {"box": ((72, 150), (46, 72)), "polybag": ((66, 136), (46, 68)), "envelope": ((60, 112), (40, 56))}
_NOVEL_TYPE = {"vivid": "box", "patterned": "polybag", "tote": "box"}
"""Labelled type of each novel family: totes are rigid containers, so the answer key says 'box'."""
MARGIN = 3
"""Canvas pixels around a package body (room for anti-aliased, rotated edges)."""
_FLAP = {"box": 0.45, "polybag": 0.35, "envelope": 0.42}


@dataclass(frozen=True)
class Sku:
    """One product's packaging, at the 640x360 reference scale."""

    sku: str
    package_type: str
    style: str
    colour: tuple[int, int, int]
    size: tuple[int, int]
    expected_zone: str
    tape: str
    label: bool


@dataclass(frozen=True)
class PackageSpec:
    """One parcel instance: identity, truth labels and the geometry of its sprite canvas."""

    package_id: str
    sku: Sku
    condition: str
    zone: str
    width: int
    height: int
    angle: float
    open_side: int
    """-1: an open flap sticks out on the left, +1 on the right (only for condition 'open')."""
    colour: tuple[int, int, int]
    detail_seed: int
    scale: float

    @property
    def flap(self) -> tuple[int, int]:
        """Extra canvas columns (left, right) reserved for an open flap."""
        if self.condition != "open":
            return 0, 0
        f = round(_FLAP[self.sku.package_type] * self.height)
        return (f, 0) if self.open_side < 0 else (0, f)

    @property
    def canvas(self) -> tuple[int, int]:
        """Unrotated canvas (width, height): body plus margins plus any open flap."""
        left, right = self.flap
        return self.width + 2 * MARGIN + left + right, self.height + 2 * MARGIN

    @property
    def shadow(self) -> int:
        return max(2, round(4 * self.scale))

    @property
    def extent(self) -> tuple[int, int]:
        """Final sprite size (width, height): rotated canvas plus the drop shadow."""
        w, h = _rotated(*self.canvas, self.angle)
        return w + self.shadow, h + self.shadow


def _rotated(w: int, h: int, angle: float) -> tuple[int, int]:
    c, s = abs(math.cos(math.radians(angle))), abs(math.sin(math.radians(angle)))
    return math.ceil(w * c + h * s), math.ceil(w * s + h * c)


class Catalogue:
    """The SKUs a facility ships (shared by all its cameras) plus novel ones only drift brings."""

    def __init__(self, cfg: SimConfig) -> None:
        rng = np.random.default_rng([cfg.catalogue_seed, 17])
        self.zones = cfg.zones
        self.skus = [self._draw(rng, f"SKU-{i:05d}", cfg, i, novel=False) for i in range(cfg.n_skus)]
        novel_n = max(8, min(60, cfg.n_skus // 3))
        self.novel = [self._draw(rng, f"SKU-N{i:04d}", cfg, i, novel=True) for i in range(novel_n)]
        self._by_zone = {z: [s for s in self.skus if s.expected_zone == z] for z in self.zones}
        self._novel_by_zone = {z: [s for s in self.novel if s.expected_zone == z] for z in self.zones}

    def _draw(self, rng: np.random.Generator, name: str, cfg: SimConfig, i: int, novel: bool) -> Sku:
        """One SKU; novel ones use packaging families never rendered without drift."""
        zone = self._zone_for(rng, i)
        if novel:
            style = str(rng.choice(STYLES[1:]))
            ptype = _NOVEL_TYPE[style]
        else:
            style = "standard"
            types, probs = zip(*cfg.type_mix.items(), strict=True)
            ptype = str(rng.choice(types, p=probs))
        (w0, w1), (h0, h1) = _SIZES[ptype]
        if style == "tote":
            (w0, w1), (h0, h1) = (118, 150), (62, 72)
        palette = {
            "vivid": _VIVID_COLOURS,
            "tote": _TOTE_COLOURS,
            "patterned": _VIVID_COLOURS + _BAG_COLOURS,
        }.get(style, {"box": _BOX_COLOURS, "polybag": _BAG_COLOURS, "envelope": _ENV_COLOURS}[ptype])
        base = np.array(palette[int(rng.integers(len(palette)))], np.float32)
        colour = tuple(int(c) for c in np.clip(base * rng.uniform(0.9, 1.1, 3), 0, 255))
        return Sku(
            sku=name,
            package_type=ptype,
            style=style,
            colour=colour,  # type: ignore[arg-type]
            size=(int(rng.integers(w0, w1 + 1)), int(rng.integers(h0, h1 + 1))),
            expected_zone=zone,
            tape=str(rng.choice(["tan", "clear", "branded", "none"], p=[0.45, 0.3, 0.15, 0.1])),
            label=bool(rng.random() < 0.85),
        )

    def _zone_for(self, rng: np.random.Generator, i: int) -> str:
        """Routes: every zone gets SKUs; the hold area only a small share (exceptions, returns)."""
        if i < len(self.zones):
            return self.zones[i]
        lanes = [z for z in self.zones if z != HOLDING_ZONE] or list(self.zones)
        if HOLDING_ZONE in self.zones and rng.random() < 0.1:
            return HOLDING_ZONE
        return lanes[int(rng.integers(len(lanes)))]

    def pick(self, rng: np.random.Generator, zone: str, misplaced: bool, novel: bool) -> Sku:
        """A SKU routed to `zone` (or, when misplaced, to any other zone)."""
        by_zone = self._novel_by_zone if novel else self._by_zone
        if misplaced and len(self.zones) > 1:
            pool = [s for z, skus in by_zone.items() if z != zone for s in skus]
        else:
            pool = by_zone[zone]
        if not pool:
            pool = self.novel if novel else self.skus
        return pool[int(rng.integers(len(pool)))]


def catalogue_for(cfg: SimConfig) -> Catalogue:
    """Catalogues are pure functions of the config; build each once per process."""
    key = cfg.model_dump_json()
    if key not in _CATALOGUES:
        _CATALOGUES[key] = Catalogue(cfg)
    return _CATALOGUES[key]


_CATALOGUES: dict[str, Catalogue] = {}


def sample_package(
    rng: np.random.Generator,
    cfg: SimConfig,
    package_id: str,
    zone: str,
    damage_mix: dict[str, float],
    novel_fraction: float,
) -> PackageSpec:
    """Draw one parcel riding in `zone`: SKU (maybe misplaced / novel), condition, jitter, pose."""
    misplaced = bool(rng.random() < cfg.misplaced_fraction)
    novel = bool(rng.random() < novel_fraction)
    sku = catalogue_for(cfg).pick(rng, zone, misplaced, novel)
    conditions, probs = zip(*damage_mix.items(), strict=True)
    pick = int(np.searchsorted(np.cumsum(probs), rng.random() * sum(probs), side="right"))
    condition = conditions[min(pick, len(conditions) - 1)]
    s = cfg.scale
    width = max(24, round(sku.size[0] * rng.uniform(0.93, 1.07) * s))
    height = max(18, round(sku.size[1] * rng.uniform(0.93, 1.07) * s))
    angle = float(rng.uniform(-8, 8)) if sku.style != "tote" else float(rng.uniform(-3, 3))
    spec = PackageSpec(
        package_id=package_id,
        sku=sku,
        condition=condition,
        zone=zone,
        width=width,
        height=height,
        angle=angle,
        open_side=int(rng.choice([-1, 1])),
        colour=tuple(int(c) for c in np.clip(np.array(sku.colour) * rng.uniform(0.94, 1.06, 3), 0, 255)),  # type: ignore[arg-type]
        detail_seed=int(rng.integers(2**31)),
        scale=s,
    )
    return _fit_lane(spec, cfg.lane_height)


def _fit_lane(spec: PackageSpec, lane_height: int) -> PackageSpec:
    """Shrink the height, then the tilt, until the sprite fits inside its zone band."""
    limit = int(lane_height * 0.96)
    for _ in range(12):
        if spec.extent[1] <= limit:
            return spec
        if spec.height > 0.75 * spec.sku.size[1] * spec.scale:
            spec = replace(spec, height=spec.height - 2)
        else:
            spec = replace(spec, angle=spec.angle * 0.5, height=max(18, spec.height - 1))
    return replace(spec, angle=0.0, height=max(18, limit - 2 * MARGIN - spec.shadow))
