"""Zones: named polygons in a camera's frame (lanes, holding areas) and where a box lies."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from contract.frames import Box


@dataclass(frozen=True)
class Zone:
    name: str
    polygon: np.ndarray
    """(N, 2) float32 vertices in frame pixels, N >= 3."""

    def __post_init__(self) -> None:
        # The polygon's edges, once (np.roll per lookup was a tenth of the inference thread's time).
        object.__setattr__(self, "_edges", (*self.polygon.T, *np.roll(self.polygon, -1, axis=0).T))

    def contains(self, x: float, y: float) -> bool:
        """Even-odd ray casting; points on the top/left edges count as inside."""
        px, py, qx, qy = self._edges  # type: ignore[attr-defined]
        crosses = (py <= y) != (qy <= y)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = px + (y - py) * (qx - px) / (qy - py)
        return bool(np.count_nonzero(crosses & (x < x_at)) % 2)


class ZoneMap:
    """The zones of one camera; a box belongs to the first zone holding its centre."""

    def __init__(self, zones: list[Zone]) -> None:
        self.zones = zones

    def locate(self, box: Box) -> str:
        cx, cy = (box.x1 + box.x2) / 2, (box.y1 + box.y2) / 2
        for zone in self.zones:
            if zone.contains(cx, cy):
                return zone.name
        return ""

    def __bool__(self) -> bool:
        return bool(self.zones)
