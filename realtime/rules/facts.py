"""What the rules look at: plain, immutable values, so the engine runs without any I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from realtime.windows.model import Counts


@dataclass(frozen=True, slots=True)
class Decision:
    """One package decision (a ``package_detections`` decision row and its assessment)."""

    event_id: str
    facility_id: str
    camera_id: str
    package_id: str
    zone: str
    expected_zone: str
    condition: str
    condition_confidence: float
    detection_confidence: float
    fallback: bool
    end_to_end_ms: float | None
    event_time: datetime

    @property
    def damaged(self) -> bool:
        return self.condition != "ok"

    @property
    def misplaced(self) -> bool:
        return bool(self.expected_zone) and self.zone != self.expected_zone


@dataclass(frozen=True, slots=True)
class Sighting:
    """A package seen in a zone at a time (any detection or decision); ``first_seen`` is the
    start of the camera track that saw it, so a long stay is measured from its real start."""

    facility_id: str
    package_id: str
    zone: str
    time: datetime
    first_seen: datetime | None = None


@dataclass(frozen=True, slots=True)
class Zone:
    facility_id: str
    zone_id: str
    kind: str = "lane"
    next_zone_id: str | None = None
    max_dwell_s: float | None = None


@dataclass(frozen=True, slots=True)
class ConveyorMinute:
    """One conveyor's decision counts in one UTC minute, as the per-minute windows hold them."""

    facility_id: str
    group_by: str
    """What names the conveyor: ``zone`` or ``camera_id`` (a rate rule's ``group_by``)."""
    conveyor: str
    minute: datetime
    counts: Counts


@dataclass(frozen=True)
class Facts:
    """Everything one evaluation needs; :mod:`realtime.rules.loader` fills it from the database
    (decisions, sightings, zones, baselines) and the per-minute windows (conveyor minutes)."""

    decisions: tuple[Decision, ...] = ()
    """Single decisions, for the threshold rules."""
    conveyor_minutes: tuple[ConveyorMinute, ...] = ()
    """Per-minute conveyor counts, for the rate rules."""
    sightings: tuple[Sighting, ...] = ()
    zones: dict[tuple[str, str], Zone] = field(default_factory=dict)
    """By (facility_id, zone_id)."""
    baselines: dict[tuple[str, str, str, str], Counts] = field(default_factory=dict)
    """By (rule name, facility_id, conveyor key, window start ISO) — see ``engine.baseline_key``."""
