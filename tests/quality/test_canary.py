"""The canary's verdict: an accuracy loss counts only when it holds at 95 % confidence."""

from __future__ import annotations

from datetime import date

from quality.canary import Arm, Bounds, decide, nearest_days, wilson_upper


def arm(version: str, verified: int, correct: int) -> Arm:
    return Arm(
        version,
        decisions=verified,
        verified=verified,
        verified_correct=correct,
        anomalies=0,
        p95_infer_ms=10.0,
    )


def test_one_mistake_in_a_small_canary_sample_is_no_clear_loss_but_a_real_drop_is():
    production = arm("v1", 60, 60)
    assert decide(arm("v2", 32, 31), production, Bounds()).verdict == "promote_recommended"
    lost = decide(arm("v2", 40, 28), production, Bounds())
    assert lost.verdict == "rollback" and lost.reasons[0].startswith(
        "verified accuracy 70.0% vs production 100.0%"
    )


def test_the_wilson_bound_narrows_with_more_samples_and_never_exceeds_one():
    assert wilson_upper(31, 32, 1.645) > wilson_upper(310, 320, 1.645) > 31 / 32
    assert wilson_upper(40, 40, 1.645) == 1.0 and wilson_upper(0, 0, 1.645) == 1.0


def test_the_baseline_takes_the_fewest_nearest_days_that_hold_enough_verified_samples():
    days = [(date(2025, 3, 11), 20), (date(2025, 3, 10), 20), (date(2025, 3, 9), 500)]
    assert nearest_days(days, 30) == [date(2025, 3, 11), date(2025, 3, 10)]
    assert nearest_days(days[:1], 20) == [date(2025, 3, 11)]
    assert nearest_days(days[:2], 41) == []
