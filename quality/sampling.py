"""Stratified, deterministic sampling of decisions for human verification.

Each stratum (here: the predicted condition) contributes ``ceil(rate × size)`` decisions, at
least ``minimum`` when it is not empty, so rare damage classes are always seen by a person. The
choice ranks decisions by a hash of their event id: re-running a day picks the same decisions,
and late events change a day's sample by at most the few they displace.

``hard_first`` orders labeled packages for a retraining budget: the model's mistakes first.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class LabeledPackage:
    """A package a person labeled, as the retraining budget sees it."""

    key: str
    """Identity of the package (facility and package id)."""
    day: str
    """UTC day of the labeled decision (ISO)."""
    wrong: bool
    """The label differs from the production model's decision."""
    hard_example: bool
    """The label came back from the hard-example queue (a decision the model was unsure of)."""
    confidence: float
    """The model's confidence in its decision."""

    @property
    def hard(self) -> bool:
        return self.wrong or self.hard_example


def hard_first(packages: Iterable[LabeledPackage], budget: int = 0) -> list[LabeledPackage]:
    """The ``budget`` packages most worth training on (all of them when ``budget`` is 0), in that order.

    Those the model got wrong first, then hard-example labels, then the least confident: on the
    label-efficiency benchmark, labels of the model's mistakes spread over several drifted days
    were what raised accuracy (docs/benchmarks.md), not more labels of what it already gets right.
    Ties break by a stable hash, so re-running picks the same packages."""
    if budget < 0:
        raise ValueError(f"label budget must be >= 0, got {budget}")
    ranked = sorted(
        packages, key=lambda p: (not p.wrong, not p.hard_example, p.confidence, sample_rank(p.key, "budget"))
    )
    return ranked[:budget] if budget else ranked
