"""Per-facility, per-minute window figures: the Redis layout, reading them, and their meaning.

A window is one facility's decisions (one per package) whose event time falls in one UTC
minute, plus the anomalies flagged in that minute. Layout per window ``wv:win:<facility>:<epoch
minute start>``: a hash of counters (``packages``, ``damaged``, ``misplaced``, ``fallback``,
``anomalies:<kind>``, and the same four per conveyor: ``zone:<counter>:<zone>`` and
``camera_id:<counter>:<camera>``, which the rate rules read), a sorted set ``…:lat`` of decision
event ids scored by their edge end-to-end latency (the p99 source, and the per-event idempotency
record), and a set ``…:anom`` of counted anomaly ids.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis

WINDOW_PREFIX = "wv:win:"
CONVEYOR_GROUPS = ("zone", "camera_id")
"""How decisions are also counted per conveyor: by the zone they were seen in, by their camera."""
NO_LATENCY = -1.0
"""Latency score of a decision without stage timings: counted, but not part of the p99."""


def minute_of(epoch_ms: int) -> int:
    """Epoch seconds of the UTC minute holding ``epoch_ms``."""
    return epoch_ms // 60_000 * 60


def window_keys(facility_id: str, minute: int) -> tuple[str, str, str]:
    """(counters hash, latency zset, anomaly-id set) of one window."""
    base = f"{WINDOW_PREFIX}{facility_id}:{minute}"
    return base, f"{base}:lat", f"{base}:anom"


COUNTERS = ("packages", "damaged", "misplaced", "fallback")
"""A window's decision counters, as its hash and `Counts` name them."""


@dataclass(frozen=True, slots=True)
class Counts:
    """Decision counts: a window's, one conveyor's in a window, or a rule's baseline."""

    packages: int = 0
    damaged: int = 0
    misplaced: int = 0
    fallback: int = 0

    def rate(self, metric: str) -> float:
        hits = {
            "damage_rate": self.damaged,
            "misplacement_rate": self.misplaced,
            "fallback_rate": self.fallback,
        }
        return hits[metric] / self.packages if self.packages else 0.0

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.packages + other.packages,
            self.damaged + other.damaged,
            self.misplaced + other.misplaced,
            self.fallback + other.fallback,
        )


@dataclass(frozen=True)
class Window:
    """One facility-minute."""

    facility_id: str
    minute: datetime
    counts: Counts = Counts()
    """The facility's decision counts of this minute (``counts.rate("damage_rate")`` …)."""
    p99_e2e_ms: float | None = None
    anomalies: dict[str, int] = field(default_factory=dict)
    conveyors: dict[tuple[str, str], Counts] = field(default_factory=dict)
    """By (group, conveyor): ``("zone", "sorter")``, ``("camera_id", "cam-01")``."""


def _minutes(start: datetime, end: datetime) -> list[int]:
    first = int(start.timestamp()) // 60 * 60
    return list(range(first, math.ceil(end.timestamp()), 60))


def p99_rank(count: int) -> int:
    """0-based rank of the 99th percentile (``percentile_disc(0.99)``) among ``count`` values."""
    return max(0, math.ceil(0.99 * count) - 1)


def read_windows(client: redis.Redis, facility_id: str, start: datetime, end: datetime) -> list[Window]:
    """The non-empty windows of minutes overlapping ``[start, end)``, oldest first (two round trips)."""
    minutes = _minutes(start, end)
    with client.pipeline(transaction=False) as pipe:
        for minute in minutes:
            counters_key, latencies_key, _ = window_keys(facility_id, minute)
            pipe.hgetall(counters_key)
            pipe.zcount(latencies_key, 0, "+inf")
        replies: list[Any] = pipe.execute()
    found = [(m, replies[2 * i], replies[2 * i + 1]) for i, m in enumerate(minutes) if replies[2 * i]]
    with client.pipeline(transaction=False) as pipe:
        for minute, _, measured in found:
            pipe.zrangebyscore(
                window_keys(facility_id, minute)[1],
                0,
                "+inf",
                start=p99_rank(measured),
                num=1,
                withscores=True,
            )
        p99s = pipe.execute() if found else []
    windows = []
    for (minute, raw, _), p99 in zip(found, p99s, strict=True):
        counters = {k.decode(): int(v) for k, v in raw.items()}
        conveyors: dict[tuple[str, str], dict[str, int]] = {}
        for key, value in counters.items():
            group, _, rest = key.partition(":")
            if group in CONVEYOR_GROUPS:
                counter, _, conveyor = rest.partition(":")
                conveyors.setdefault((group, conveyor), {})[counter] = value
        windows.append(
            Window(
                facility_id=facility_id,
                minute=datetime.fromtimestamp(minute, UTC),
                counts=Counts(**{k: counters.get(k, 0) for k in COUNTERS}),
                p99_e2e_ms=p99[0][1] if p99 else None,
                anomalies={k.split(":", 1)[1]: v for k, v in counters.items() if k.startswith("anomalies:")},
                conveyors={key: Counts(**c) for key, c in sorted(conveyors.items())},
            )
        )
    return windows
