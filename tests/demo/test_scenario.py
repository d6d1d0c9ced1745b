"""The demo's plan: a closed week ending yesterday, unique camera streams, drift where and when planned."""

from datetime import UTC, date, datetime, timedelta

import pytest

from edge.sources.factory import open_source
from wv.demo.scenario import Scenario

FACILITIES = ("FAC-001", "FAC-002", "FAC-003")
TODAY = date(2026, 11, 25)


def test_the_week_ends_yesterday_and_each_burst_is_stamped_on_its_day() -> None:
    scenario = Scenario(FACILITIES, today=TODAY)

    assert scenario.dates == [TODAY - timedelta(days=n) for n in range(7, 0, -1)]
    for day in scenario.dates:
        for bursts in scenario.day_plan(day).values():
            for burst in bursts:
                source = open_source(burst.uri, burst.camera)
                assert source.start_time == datetime(day.year, day.month, day.day, 9, tzinfo=UTC).timestamp()
                assert source.frames == scenario.frames == 100
                assert source.realtime is False


def test_no_two_camera_days_share_a_scene() -> None:
    scenario = Scenario(FACILITIES, today=TODAY)
    seeds = [b.seed for d in scenario.dates for bursts in scenario.day_plan(d).values() for b in bursts]

    assert len(seeds) == 7 * 3 * 2 == len(set(seeds))


def test_drift_is_on_only_at_the_drifted_facility_from_the_drift_day() -> None:
    scenario = Scenario(FACILITIES, today=TODAY)
    drifted = {
        (b.facility, scenario.day_number(d))
        for d in scenario.dates
        for bursts in scenario.day_plan(d).values()
        for b in bursts
        if b.drift == scenario.drift and f"drift={scenario.drift}" in b.uri
    }

    assert scenario.drifted_facility == "FAC-002"
    assert drifted == {("FAC-002", n) for n in range(4, 8)}
    assert [scenario.phase("FAC-001", d) for d in scenario.dates] == [
        *["before drift"] * 3, *["drift, old model"], "swap day", *["after swap"] * 2,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"drift_day": 5, "swap_day": 5}, "drift day"),
        ({"drift_facility": "FAC-404"}, "not among"),
        ({"drift": "sunburn"}, "unknown drift preset"),
        ({"seconds": 1.0}, "at least 20"),
    ],
)
def test_a_plan_that_cannot_tell_the_story_is_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Scenario(FACILITIES, today=TODAY, **kwargs)  # type: ignore[arg-type]
