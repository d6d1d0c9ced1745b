"""The declarative rule file (YAML), validated into typed rules.

Four rule types: ``threshold`` (one decision matches every predicate), ``rate`` (a metric over
a tumbling window on one conveyor, compared with that conveyor's baseline over the previous
days), ``dwell`` (a package stays in a holding zone too long) and ``lost`` (a package seen in
one zone never reaches the next one in time). Zone limits and successions default to the
``zones`` table (``kind``, ``max_dwell_seconds``, ``next_zone_id``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from foundation.settings import ConfigError

DEFAULT_RULES_FILE = Path(__file__).with_name("default_rules.yaml")

Severity = Literal["info", "warning", "critical"]
DecisionField = Literal[
    "condition",
    "condition_confidence",
    "detection_confidence",
    "fallback",
    "end_to_end_ms",
    "zone",
    "expected_zone",
    "camera_id",
    "misplaced",
]
"""What a threshold predicate may test; ``misplaced`` is ``zone != expected_zone``."""

_KIND = r"^[a-z][a-z0-9_]{0,63}$"
MAX_WAIT_S = 366 * 86400.0
"""Longest dwell limit or lost wait: a year (a limit past year 9999 would overflow the clock)."""


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    kind: str = Field(pattern=_KIND, description="anomaly_flags.kind of what the rule raises")
    severity: Severity = "warning"
    facilities: tuple[str, ...] | None = None
    """Only these facilities (default: all)."""

    def applies_to(self, facility_id: str) -> bool:
        return self.facilities is None or facility_id in self.facilities


class Predicate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    field: DecisionField
    op: Literal["<", "<=", ">", ">=", "==", "!=", "in", "not_in"]
    value: float | bool | str | tuple[float | str, ...]

    @model_validator(mode="after")
    def _value_fits_op(self) -> Predicate:
        if (self.op in ("in", "not_in")) != isinstance(self.value, tuple):
            raise ValueError(
                f"op {self.op!r} needs {'a list' if self.op in ('in', 'not_in') else 'a single value'}"
            )
        # Checked here, or the first evaluation would fail comparing, e.g., a condition with 0.5.
        holds = _FIELD_TYPES[self.field]
        if self.op in ("<", "<=", ">", ">=") and holds != "number":
            raise ValueError(f"op {self.op!r} compares numbers; {self.field!r} holds {holds} values")
        for v in self.value if isinstance(self.value, tuple) else (self.value,):
            if _type_name(v) != holds:
                raise ValueError(f"{self.field!r} holds {holds} values; {v!r} is not one")
        return self


_FIELD_TYPES: dict[str, str] = {
    "condition": "text",
    "zone": "text",
    "expected_zone": "text",
    "camera_id": "text",
    "condition_confidence": "number",
    "detection_confidence": "number",
    "end_to_end_ms": "number",
    "fallback": "boolean",
    "misplaced": "boolean",
}


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    return "number" if isinstance(value, int | float) else "text"


class ThresholdRule(_Rule):
    type: Literal["threshold"]
    when: tuple[Predicate, ...] = Field(min_length=1)


class RateRule(_Rule):
    type: Literal["rate"]
    metric: Literal["damage_rate", "misplacement_rate", "fallback_rate"]
    group_by: Literal["zone", "camera_id"] = "zone"
    window_minutes: int = Field(15, ge=1, le=24 * 60)
    factor: float = Field(3.0, gt=1)
    critical_factor: float | None = Field(None, gt=1)
    """Above this multiple of the baseline the flag is critical."""
    min_packages: int = Field(20, ge=1)
    min_baseline_rate: float = Field(0.01, gt=0, le=1)
    """Floor of the baseline, so a conveyor with no history does not flag on its first incident."""
    baseline_days: int = Field(7, ge=1, le=90)

    @model_validator(mode="after")
    def _windows_tile_the_day(self) -> RateRule:
        if (24 * 60) % self.window_minutes:
            raise ValueError("window_minutes must divide a day (windows are aligned to midnight UTC)")
        return self


class DwellRule(_Rule):
    type: Literal["dwell"]
    zones: tuple[str, ...] | None = None
    """Zones watched (default: every zone of kind ``holding``)."""
    max_dwell_s: float | None = Field(None, gt=0, le=MAX_WAIT_S)
    """Limit (default: the zone's ``max_dwell_seconds``; zones without one are not watched)."""


class LostRule(_Rule):
    """A package seen in a zone that has a next zone, then nowhere within ``within_s``: it did
    not reach the next zone and was not diverted anywhere we watch either (a package that turns
    up in the wrong zone is misplaced, which the decisions already say, not lost)."""

    type: Literal["lost"]
    within_s: float = Field(gt=0, le=MAX_WAIT_S)
    from_zones: tuple[str, ...] | None = None
    """Zones whose packages must reach their next zone (default: every zone with a next zone)."""
    next_zone: str | None = None
    """Override of the zones table's ``next_zone_id``."""


Rule = Annotated[ThresholdRule | RateRule | DwellRule | LostRule, Field(discriminator="type")]


class RuleSet(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: tuple[Rule, ...]

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
        names = [r.name for r in rules]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"rule names must be unique: {duplicated}")
        return rules


def parse_rules(text: str, origin: str = "<rules>") -> RuleSet:
    """Validate a YAML rule document; errors name the file and the offending rule."""
    try:
        return RuleSet.model_validate(yaml.safe_load(text) or {})
    except (yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(f"WV_RULES_FILE: {origin} is not a valid rule file:\n{exc}") from None


def load_rules(path: Path | None = None) -> RuleSet:
    """The rules of ``path`` (default: the packaged :data:`DEFAULT_RULES_FILE`)."""
    path = path or DEFAULT_RULES_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"WV_RULES_FILE: cannot read {path}: {exc}") from None
    return parse_rules(text, str(path))
