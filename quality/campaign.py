"""Drift-triggered labeling campaigns: when a facility's verified accuracy drops, ask its people for
more labels, the model's least sure decisions first, until the retraining recipe has what it needs.

On ``six_weeks_later`` one day of the regular 1 % sample is far from enough: the whole-model GPU
fine-tune passes 94 % from ≈ 1,400 verified drifted packages, and the two-core recipe trains on
at most 400 (docs/benchmarks.md, issue 21). A campaign starts on the day a facility's evaluation
falls below the threshold and ends when the labels are there, when the facility recovers, or after
``max_days``. Pure functions: the Dagster asset ``labeling_campaign`` and ``bench.label_efficiency``
both decide with them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Literal, TypeVar

from quality.sampling import sample_rank

T = TypeVar("T")

Status = Literal["none", "asking", "waiting", "complete", "expired"]
"""``none``: the facility is not below the threshold; ``asking``: today's least sure decisions go to
labeling; ``waiting``: enough were asked, their labels are not all back; ``complete``: the recipe's
labels are there; ``expired``: ``max_days`` passed without them."""


@dataclass(frozen=True)
class CampaignPolicy:
    """How hard a campaign asks and when it stops (``WV_CAMPAIGN_*``, ``WV_RETRAIN_LABELS_*``)."""

    rate: float
    """Share of the facility-day's package tracks sent for labeling on top of the regular sample (0: off)."""
    daily_quota: int
    """At most this many a facility-day: the labelers' capacity."""
    max_days: int
    """The campaign ends after this many days even without the labels it wants."""
    labels_wanted: int
    """Labeled packages the retraining recipe that will run needs (GPU or CPU)."""

    def __post_init__(self) -> None:
        if not 0 <= self.rate <= 1 or self.daily_quota < 0 or self.max_days < 1 or self.labels_wanted < 1:
            raise ValueError(f"invalid campaign policy {self}")


@dataclass(frozen=True)
class CampaignDay:
    """Where a facility's campaign stands on one day, and how many decisions it asks for that day."""

    status: Status
    since: date | None
    """The first day below the threshold (the campaign's start and ``retraining_dataset``'s
    ``drift_since``); None without a campaign."""
    day_number: int
    """1 on the campaign's first day; 0 without a campaign."""
    labels: int
    """Labeled packages of the facility since ``since`` (verified samples and hard examples)."""
    asked: int
    """Packages sent for labeling since ``since`` before this day's campaign tasks (labeled or not)."""
    wanted: int
    ask: int
    """Decisions to send for labeling this day."""

    @property
    def ended(self) -> bool:
        return self.status in ("complete", "expired")


def campaign_start(
    evaluations: Iterable[tuple[date, float | None]], day: date, threshold: float
) -> date | None:
    """The first day of the unbroken stretch below ``threshold`` that ``day`` belongs to, judged by the
    evaluations up to ``day``: an evaluation at or above it ends the stretch, days without verified
    samples (accuracy None) change nothing."""
    start: date | None = None
    for evaluated, accuracy in sorted(e for e in evaluations if e[0] <= day):
        if accuracy is None:
            continue
        if accuracy >= threshold:
            start = None
        elif start is None:
            start = evaluated
    return start


def campaign_day(
    policy: CampaignPolicy, since: date | None, day: date, labels: int, asked: int, tracks: int
) -> CampaignDay:
    """The campaign's state on ``day`` and its ask: ``ceil(rate × tracks)`` capped by the daily quota
    and by what is still wanted, while labels and days last."""
    if since is None or policy.rate == 0:
        return CampaignDay("none", None, 0, labels, asked, policy.labels_wanted, 0)
    number = (day - since).days + 1
    status: Status
    ask = 0
    if labels >= policy.labels_wanted:
        status = "complete"
    elif number > policy.max_days:
        status = "expired"
    elif asked >= policy.labels_wanted:
        status = "waiting"
    else:
        status = "asking"
        ask = min(math.ceil(policy.rate * tracks), policy.daily_quota, policy.labels_wanted - asked)
    return CampaignDay(status, since, number, labels, asked, policy.labels_wanted, ask)


def least_sure(
    items: Iterable[T], track: Callable[[T], str], confidence: Callable[[T], float], count: int
) -> list[T]:
    """``count`` items, one per track (its least confident), least confident first: the decisions a
    person's label changes most. Ties break by a stable hash of the track, so a re-run asks the same."""
    per_track: dict[str, T] = {}
    for item in items:
        key = track(item)
        if key not in per_track or confidence(item) < confidence(per_track[key]):
            per_track[key] = item
    ranked: Sequence[T] = sorted(
        per_track.values(), key=lambda item: (confidence(item), sample_rank(track(item), "campaign"))
    )
    return list(ranked[: max(0, count)])
