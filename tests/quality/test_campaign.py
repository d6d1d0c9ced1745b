"""Drift-triggered labeling campaigns: when they run, how much they ask, and which decisions."""

from datetime import date, timedelta

import pytest

from quality.campaign import CampaignPolicy, campaign_day, campaign_start, least_sure

DROP = date(2025, 3, 11)
POLICY = CampaignPolicy(rate=0.05, daily_quota=30, max_days=5, labels_wanted=100)


def test_a_campaign_starts_on_the_first_day_below_the_threshold_and_ends_with_a_recovery() -> None:
    evaluations = [
        (date(2025, 3, 10), 0.97),
        (DROP, 0.80),
        (date(2025, 3, 12), None),  # nothing verified that day: no news
        (date(2025, 3, 13), 0.85),
        (date(2025, 3, 14), 0.95),
        (date(2025, 3, 15), 0.90),
    ]
    assert campaign_start(evaluations, date(2025, 3, 10), 0.94) is None
    assert campaign_start(evaluations, DROP, 0.94) == DROP
    assert campaign_start(evaluations, date(2025, 3, 13), 0.94) == DROP
    assert campaign_start(evaluations, date(2025, 3, 14), 0.94) is None  # recovered
    assert campaign_start(evaluations, date(2025, 3, 15), 0.94) == date(2025, 3, 15)  # a new drop


def test_it_asks_a_share_of_the_day_capped_by_quota_and_need_until_labels_or_days_run_out() -> None:
    assert campaign_day(POLICY, None, DROP, 0, 0, 1000).status == "none"
    first = campaign_day(POLICY, DROP, DROP, labels=5, asked=5, tracks=400)
    assert (first.status, first.day_number, first.ask) == ("asking", 1, 20)  # 5 % of 400
    assert campaign_day(POLICY, DROP, DROP, 5, 5, tracks=2000).ask == 30  # the labelers' quota
    assert campaign_day(POLICY, DROP, DROP, 80, 90, tracks=2000).ask == 10  # only what is still wanted
    waiting = campaign_day(POLICY, DROP, DROP + timedelta(days=2), labels=70, asked=100, tracks=400)
    assert (waiting.status, waiting.ask, waiting.ended) == ("waiting", 0, False)
    done = campaign_day(POLICY, DROP, DROP + timedelta(days=3), labels=100, asked=120, tracks=400)
    assert (done.status, done.ask, done.ended) == ("complete", 0, True)
    late = campaign_day(POLICY, DROP, DROP + timedelta(days=5), labels=60, asked=60, tracks=400)
    assert (late.status, late.day_number, late.ended) == ("expired", 6, True)
    off = CampaignPolicy(rate=0, daily_quota=30, max_days=5, labels_wanted=100)
    assert campaign_day(off, DROP, DROP, 0, 0, 400).status == "none"
    with pytest.raises(ValueError):
        CampaignPolicy(rate=1.5, daily_quota=30, max_days=5, labels_wanted=100)


def test_the_least_sure_decision_of_each_track_is_asked_first_and_repeatably() -> None:
    decisions = [("t1", 0.9), ("t1", 0.6), ("t2", 0.7), ("t3", 0.99), ("t4", 0.7), ("t5", 0.5)]
    picked = least_sure(decisions, track=lambda d: d[0], confidence=lambda d: d[1], count=4)
    assert [d[0] for d in picked[:2]] == ["t5", "t1"] and picked[1] == ("t1", 0.6)
    assert {d[0] for d in picked[2:]} == {"t2", "t4"}  # the tie, in a stable order
    again = least_sure(reversed(decisions), track=lambda d: d[0], confidence=lambda d: d[1], count=4)
    assert again == picked
    assert least_sure(decisions, lambda d: d[0], lambda d: d[1], 0) == []
