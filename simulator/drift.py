"""Drift knobs: how a facility's cameras and parcels change after the model was trained.

The drift-evaluation loop must notice these, so each knob is independent (to measure its effect
alone) and `six_weeks_later` combines them into one realistic, clearly harmful shift.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from contract.vocabulary import CONDITIONS
from simulator.config import normalise_mix


class DriftConfig(BaseModel):
    """Deviations from the training distribution; the defaults change nothing."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "none"
    brightness: float = Field(default=1.0, gt=0, le=3)
    """Multiplier on the scene illumination (ageing lamps < 1)."""
    color_temperature: float = Field(default=0.0, ge=-1, le=1)
    """-1 cold/blue … +1 warm/amber white balance shift."""
    blur_sigma: float = Field(default=0.0, ge=0, le=10)
    """Gaussian blur in pixels (dust on the lens, focus drift)."""
    noise_scale: float = Field(default=1.0, ge=0, le=10)
    """Multiplier on sensor noise (gain raised to compensate for dim light)."""
    novel_fraction: float = Field(default=0.0, ge=0, le=1)
    """Share of packages with appearances absent from training (vivid brands, patterned bags, totes)."""
    damage_mix: dict[str, float] | None = None
    """Replaces the configured condition mix (e.g. more wet parcels in the rainy season)."""
    perspective: float = Field(default=0.0, ge=0, le=0.4)
    """Camera tilt: the far (top) edge of the belt appears this much narrower."""
    rotation_deg: float = Field(default=0.0, ge=-20, le=20)
    """Camera roll after someone bumped the mount."""

    @field_validator("damage_mix")
    @classmethod
    def _damage_mix(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        return None if v is None else normalise_mix(v, CONDITIONS, "conditions")

    @property
    def is_identity(self) -> bool:
        return self.model_dump(exclude={"name"}) == DriftConfig().model_dump(exclude={"name"})

    @property
    def warps(self) -> bool:
        return self.perspective > 0 or self.rotation_deg != 0


PRESETS: dict[str, DriftConfig] = {
    "none": DriftConfig(),
    "lighting": DriftConfig(name="lighting", brightness=0.7, color_temperature=0.5, noise_scale=1.6),
    "blur": DriftConfig(name="blur", blur_sigma=1.6),
    "new_packages": DriftConfig(name="new_packages", novel_fraction=0.4),
    "damage_shift": DriftConfig(
        name="damage_shift", damage_mix={"ok": 0.6, "crushed": 0.12, "torn": 0.06, "wet": 0.16, "open": 0.06}
    ),
    "camera_bump": DriftConfig(name="camera_bump", perspective=0.14, rotation_deg=3.0),
    "six_weeks_later": DriftConfig(
        name="six_weeks_later",
        brightness=0.72,
        color_temperature=0.45,
        blur_sigma=1.3,
        noise_scale=1.8,
        novel_fraction=0.35,
        damage_mix={"ok": 0.68, "crushed": 0.1, "torn": 0.05, "wet": 0.12, "open": 0.05},
        perspective=0.12,
        rotation_deg=2.5,
    ),
}


def resolve_drift(drift: str | DriftConfig | None) -> DriftConfig:
    """A preset name, a config, or None (no drift) → DriftConfig, with a clear error for typos."""
    if drift is None:
        return PRESETS["none"]
    if isinstance(drift, DriftConfig):
        return drift
    try:
        return PRESETS[drift]
    except KeyError:
        raise ValueError(f"unknown drift preset {drift!r}; choose one of {sorted(PRESETS)}") from None
