"""Simulator configuration: scene geometry, traffic and the class mix.

One frozen pydantic model so a dataset's `dataset.json` can record exactly what produced it and
a run can be repeated from that record alone.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from contract.vocabulary import CONDITIONS, PACKAGE_TYPES

HOLDING_ZONE = "holding"
SIM_EPOCH = 1_735_689_600.0
"""Default start of the simulated clock (2025-01-01T00:00:00Z), fixed so timestamps are reproducible."""


def normalise_mix(mix: dict[str, float], allowed: tuple[str, ...], what: str) -> dict[str, float]:
    """Validate a name → weight mapping and scale it to sum to 1 (keys in `allowed` order)."""
    unknown = sorted(set(mix) - set(allowed))
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; allowed: {list(allowed)}")
    if any(w < 0 for w in mix.values()) or sum(mix.values()) <= 0:
        raise ValueError(f"{what} weights must be >= 0 with a positive sum, got {mix}")
    total = sum(mix.values())
    return {k: mix.get(k, 0.0) / total for k in allowed if mix.get(k, 0.0) > 0}


class SimConfig(BaseModel):
    """Everything that shapes the rendered conveyor except the seed and the drift."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    width: int = Field(default=640, ge=160, le=3840)
    height: int = Field(default=360, ge=120, le=2160)
    fps: float = Field(default=30.0, gt=0, le=240)
    belt_speed: float = Field(default=0.3, gt=0, le=5)
    """Frame widths per second (0.3 → a package crosses a 640 px view in about 3.3 s)."""
    arrival_rate: float = Field(default=1.5, gt=0, le=50)
    """Mean packages per second entering the view, over all zones (minimum spacing caps it)."""
    zones: tuple[str, ...] = ("lane-a", "lane-b", "lane-c", HOLDING_ZONE)
    """Bands across the belt, top to bottom; a zone named 'holding' is drawn as the hold area."""
    misplaced_fraction: float = Field(default=0.05, ge=0, le=1)
    """Share of packages riding in a zone other than their SKU's expected zone."""
    damage_mix: dict[str, float] = Field(
        default_factory=lambda: {"ok": 0.8, "crushed": 0.05, "torn": 0.05, "wet": 0.05, "open": 0.05}
    )
    type_mix: dict[str, float] = Field(
        default_factory=lambda: {"box": 0.6, "polybag": 0.25, "envelope": 0.15}
    )
    n_skus: int = Field(default=200, ge=1, le=100_000)
    catalogue_seed: int = 0
    """Seed of the SKU catalogue, shared by every camera and seed (SKUs are products, not scenes)."""
    noise: float = Field(default=1.0, ge=0, le=5)
    """Sensor-noise scale (1 ≈ σ 4 grey levels)."""
    lighting_variation: float = Field(default=1.0, ge=0, le=3)
    """Scale of the per-scene brightness, tint and gradient randomisation."""

    @field_validator("damage_mix")
    @classmethod
    def _damage_mix(cls, v: dict[str, float]) -> dict[str, float]:
        return normalise_mix(v, CONDITIONS, "conditions")

    @field_validator("type_mix")
    @classmethod
    def _type_mix(cls, v: dict[str, float]) -> dict[str, float]:
        return normalise_mix(v, PACKAGE_TYPES, "package types")

    @model_validator(mode="after")
    def _zones(self) -> SimConfig:
        if not self.zones or len(set(self.zones)) != len(self.zones):
            raise ValueError(f"zones must be non-empty and unique, got {self.zones}")
        if self.lane_height < 40:
            raise ValueError(f"{len(self.zones)} zones leave {self.lane_height} px per zone; need >= 40")
        return self

    @property
    def scale(self) -> float:
        """Pixel scale relative to the 640x360 reference layout."""
        return min(self.width / 640, self.height / 360)

    @property
    def lane_height(self) -> int:
        """Height of one zone band in pixels (the belt spans the frame minus two side rails)."""
        return int((self.height - 2 * self.rail_height) / len(self.zones))

    @property
    def rail_height(self) -> int:
        return max(4, round(self.height * 0.04))

    @property
    def speed_px(self) -> float:
        """Belt speed in pixels per second."""
        return self.belt_speed * self.width
