"""A canary against production, like with like: each arm's figures, and the verdict.

Which production work the canary is held against is the caller's choice (``canary_comparison``
takes production's work on the canary's own facilities or cameras just before the canary started
there, :func:`nearest_days`): a canary runs where a person put it — usually where production is
weakest —, so production elsewhere on the same days is no measure of it; that comparison rolled a
candidate back in the demo that had lifted a drifted facility from 85 % to 93.5 %.

A clear loss (verified accuracy, model latency or anomaly rate beyond its bound) rolls the canary
back automatically; for accuracy, "clear" means even the canary's upper confidence bound (Wilson,
one-sided 95 %) is beyond it — a canary's few dozen samples make one mistake in 32 look like a
3-point drop, which alone rolled a good model back in the demo. No clear loss once both arms have
enough verified samples recommends the promotion, which a person makes (``wv model approve VERSION
--by NAME``); fewer samples keep watching. The arms are different packages (the same cameras on
other days, or other cameras), so "agreement" here is how alike their decisions' condition mixes
are (1 − total variation distance), not a per-package comparison: the edges' shadow run measures
that before a canary ever serves.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Literal


@dataclass(frozen=True)
class Arm:
    """One model version's work in one place and time (the canary's trial, or production's baseline)."""

    version: str
    decisions: int
    verified: int
    verified_correct: int
    anomalies: int
    p95_infer_ms: float | None
    conditions: Mapping[str, int] = field(default_factory=dict)

    @property
    def accuracy(self) -> float | None:
        return self.verified_correct / self.verified if self.verified else None

    @property
    def anomaly_rate(self) -> float | None:
        return self.anomalies / self.decisions if self.decisions else None


@dataclass(frozen=True)
class Bounds:
    min_verified: int = 30
    """Verified samples each arm needs before accuracy counts (and before a promotion is recommended)."""
    max_accuracy_drop: float = 0.02
    """A canary verified accuracy this far below production's is a clear loss (at ``confidence_z``)."""
    confidence_z: float = 1.645
    """Normal quantile of the canary accuracy's upper bound that must still be below (one-sided 95 %)."""
    max_latency_ratio: float = 1.5
    """Canary p95 inference time over production's beyond this is a clear loss."""
    max_anomaly_ratio: float = 2.0
    anomaly_slack: float = 0.01
    """A canary anomaly rate above production's × ratio + slack is a clear loss."""


Verdict = Literal["rollback", "promote_recommended", "keep_watching"]


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reasons: list[str]


def mix_agreement(a: Mapping[str, int], b: Mapping[str, int]) -> float | None:
    """1 − total variation distance between two condition mixes (1: the same shares)."""
    total_a, total_b = sum(a.values()), sum(b.values())
    if not total_a or not total_b:
        return None
    keys = set(a) | set(b)
    return 1 - 0.5 * sum(abs(a.get(k, 0) / total_a - b.get(k, 0) / total_b) for k in keys)


def nearest_days(verified_by_day: Sequence[tuple[date, int]], need: int) -> list[date]:
    """The fewest days, nearest first, whose verified samples together reach ``need``; empty when all
    of ``verified_by_day`` (newest first) do not.

    Production's baseline before a canary: a canary usually follows a drift, so the days just before
    it show the place as the canary finds it, and each older day risks being from before the drift
    (production reading better there than it now does) — older days are taken only for samples.
    """
    days: list[date] = []
    total = 0
    for day, verified in verified_by_day:
        days.append(day)
        total += verified
        if total >= need:
            return days
    return []


def wilson_upper(correct: int, n: int, z: float) -> float:
    """Upper Wilson score bound of a proportion ``correct / n`` (1.0 without samples)."""
    if n == 0:
        return 1.0
    p = correct / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return min(1.0, (centre + spread) / (1 + z * z / n))


def decide(canary: Arm, production: Arm, bounds: Bounds) -> Decision:
    """Roll back on a clear loss; recommend promotion when both arms have enough verified samples."""
    losses: list[str] = []
    enough = canary.verified >= bounds.min_verified and production.verified >= bounds.min_verified
    ca, pa = canary.accuracy, production.accuracy
    if enough and ca is not None and pa is not None:
        upper = wilson_upper(canary.verified_correct, canary.verified, bounds.confidence_z)
        if upper < pa - bounds.max_accuracy_drop:
            losses.append(
                f"verified accuracy {ca:.1%} vs production {pa:.1%} (at most {upper:.1%} at 95 % "
                f"confidence: more than {bounds.max_accuracy_drop:.0%} lower)"
            )
    if canary.p95_infer_ms and production.p95_infer_ms:
        ratio = canary.p95_infer_ms / production.p95_infer_ms
        if ratio > bounds.max_latency_ratio:
            losses.append(f"p95 inference {ratio:.2f}x production's (max {bounds.max_latency_ratio})")
    if canary.anomaly_rate is not None and production.anomaly_rate is not None:
        limit = production.anomaly_rate * bounds.max_anomaly_ratio + bounds.anomaly_slack
        if canary.decisions >= bounds.min_verified and canary.anomaly_rate > limit:
            losses.append(
                f"anomaly rate {canary.anomaly_rate:.1%} vs production {production.anomaly_rate:.1%}"
            )
    if losses:
        return Decision("rollback", losses)
    if enough:
        return Decision("promote_recommended", ["no clear loss; a person approves the fleet-wide rollout"])
    return Decision(
        "keep_watching",
        [
            f"verified samples canary {canary.verified}, production {production.verified} (need {bounds.min_verified})"
        ],
    )
