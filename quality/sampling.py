"""Stratified, deterministic sampling of decisions for human verification.

Each stratum (here: the predicted condition) contributes ``ceil(rate × size)`` decisions, at
least ``minimum`` when it is not empty, so rare damage classes are always seen by a person. The
choice ranks decisions by a hash of their event id: re-running a day picks the same decisions,
and late events change a day's sample by at most the few they displace.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

T = TypeVar("T")


def sample_rank(key: str, salt: str = "") -> int:
    """A stable pseudo-random rank of ``key`` (first 8 bytes of SHA-256)."""
    return int.from_bytes(hashlib.sha256(f"{salt}{key}".encode()).digest()[:8], "big")


def stratified_sample(
    items: Iterable[T],
    key: Callable[[T], str],
    stratum: Callable[[T], str],
    rate: float,
    minimum: int = 1,
    salt: str = "",
) -> list[T]:
    """The items sampled from every stratum, ordered by stratum then rank."""
    if not 0 < rate <= 1:
        raise ValueError(f"sample rate must be in (0, 1], got {rate}")
    groups: dict[str, list[T]] = defaultdict(list)
    for item in items:
        groups[stratum(item)].append(item)
    chosen: list[T] = []
    for name in sorted(groups):
        group = sorted(groups[name], key=lambda item: sample_rank(key(item), salt))
        take = min(len(group), max(minimum, math.ceil(rate * len(group))))
        chosen.extend(group[:take])
    return chosen


def stratum_counts(items: Sequence[T], stratum: Callable[[T], str]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for item in items:
        counts[stratum(item)] += 1
    return dict(sorted(counts.items()))
