"""The demo's story as data: which facilities, cameras and days, and what each camera streams.

A simulated week ends yesterday (UTC), so every day is a closed Dagster partition and the
retraining lookback reaches all of it. Each facility-day is one short burst of synthetic
conveyor video whose frame timestamps are that day's (``start_time`` in the camera URI); one
facility's cameras drift (``camera_bump`` by default) from ``drift_day`` on. Pure planning: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from simulator import PRESETS

CAMERAS_PER_FACILITY = 2


@dataclass(frozen=True)
class CameraDay:
    """One camera's burst on one day: what ``wv edge run`` streams and what the crops re-render."""

    facility: str
    camera: str
    day: date
    seed: int
    start: datetime
    frames: int
    fps: float
    arrival_rate: float
    drift: str | None

    @property
    def uri(self) -> str:
        """The synthetic camera URI: finite, unpaced (as fast as inference allows), stamped on its day."""
        uri = (
            f"synthetic://seed={self.seed}&fps={self.fps:g}&arrival_rate={self.arrival_rate:g}"
            f"&frames={self.frames}&realtime=0&start_time={self.start.timestamp():.0f}"
        )
        return uri + (f"&drift={self.drift}" if self.drift else "")


@dataclass(frozen=True)
class Scenario:
    facilities: tuple[str, ...]
    days: int = 7
    seconds: float = 10.0
    """Video per camera and day."""
    fps: float = 10.0
    arrival_rate: float = 3.0
    """Packages per second entering each camera's view."""
    drift_facility: str = ""
    """Default: the second facility (the first when there is one)."""
    drift_day: int = 4
    """First drifted day, 1-based."""
    drift: str = "camera_bump"
    """The mounts are knocked askew (tilt and roll): the shipped model reads upright parcels as crushed.
    One day of labels retrains that away; ``six_weeks_later`` (dim, blurred, noisy, new packaging)
    needs more labeled days than the week has (``python -m bench.drift_recovery``)."""
    swap_day: int = 5
    """Day during whose traffic the retrained model is approved and hot-swapped at the edges."""
    burst_time: time = time(9, 0)
    """UTC time of day at which each day's burst starts."""
    today: date = field(default_factory=lambda: datetime.now(UTC).date())

    def __post_init__(self) -> None:
        if not self.facilities:
            raise ValueError("the demo needs at least one facility")
        if self.drift not in PRESETS:
            raise ValueError(f"unknown drift preset {self.drift!r}; choose one of {sorted(PRESETS)}")
        if not 1 <= self.drift_day < self.swap_day <= self.days:
            raise ValueError(
                f"need 1 <= drift day ({self.drift_day}) < swap day ({self.swap_day}) <= days ({self.days})"
            )
        if self.drift_facility and self.drift_facility not in self.facilities:
            raise ValueError(f"drift facility {self.drift_facility!r} is not among {list(self.facilities)}")
        if self.frames < 20:
            raise ValueError(f"{self.seconds} s at {self.fps} fps is {self.frames} frames; need at least 20")

    @property
    def drifted_facility(self) -> str:
        return self.drift_facility or self.facilities[min(1, len(self.facilities) - 1)]

    @property
    def frames(self) -> int:
        return round(self.seconds * self.fps)

    @property
    def dates(self) -> list[date]:
        """The simulated week: ``days`` days ending yesterday."""
        return [self.today - timedelta(days=self.days - i) for i in range(self.days)]

    def day_number(self, day: date) -> int:
        return self.dates.index(day) + 1

    def cameras(self, facility: str) -> list[str]:
        return [f"cam-{i + 1}" for i in range(CAMERAS_PER_FACILITY)]

    def is_drifted(self, facility: str, day: date) -> bool:
        return facility == self.drifted_facility and self.day_number(day) >= self.drift_day

    def camera_day(self, facility: str, camera: str, day: date) -> CameraDay:
        f = self.facilities.index(facility)
        c = self.cameras(facility).index(camera)
        d = self.day_number(day)
        return CameraDay(
            facility=facility,
            camera=camera,
            day=day,
            seed=1000 * (f + 1) + 10 * (c + 1) + d,  # package ids never repeat across bursts
            start=datetime.combine(day, self.burst_time, UTC),
            frames=self.frames,
            fps=self.fps,
            arrival_rate=self.arrival_rate,
            drift=self.drift if self.is_drifted(facility, day) else None,
        )

    def day_plan(self, day: date) -> dict[str, list[CameraDay]]:
        """Every facility's camera bursts of ``day``."""
        return {f: [self.camera_day(f, c, day) for c in self.cameras(f)] for f in self.facilities}

    def phase(self, facility: str, day: date) -> str:
        """'before drift', 'drift, old model', 'swap day' or 'after swap' — the summary's columns."""
        n = self.day_number(day)
        if n > self.swap_day:
            return "after swap"
        if n == self.swap_day:
            return "swap day"
        return "drift, old model" if n >= self.drift_day else "before drift"
