"""The nightly schedule releases each facility's local yesterday exactly once, in its own time zone."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from assets.common.partitions import daily_facility_partitions
from assets.common.resources import DatabaseResource
from orchestration.analytics_automation import TICK, due_facility_days, facility_nightly_schedule

pytestmark = pytest.mark.timeout(60)
ZONES = {
    "utc": "UTC",
    "new-york": "America/New_York",
    "berlin": "Europe/Berlin",
    "kolkata": "Asia/Kolkata",
    "kathmandu": "Asia/Kathmandu",
    "tokyo": "Asia/Tokyo",
    "kiritimati": "Pacific/Kiritimati",
    "pago-pago": "Pacific/Pago_Pago",
}


@pytest.mark.parametrize(
    "around", [date(2026, 3, 8), date(2026, 3, 29), date(2026, 10, 25), date(2026, 11, 1)]
)
def test_every_facility_day_is_released_once_at_four_local_or_after_its_utc_day(around):
    start = datetime.combine(around - timedelta(days=2), time(), UTC)
    released: Counter[tuple[str, date]] = Counter()
    when: dict[tuple[str, date], datetime] = {}
    now = start
    while now < start + timedelta(days=5):
        for facility, day in due_facility_days(now, ZONES):
            released[(facility, day)] += 1
            when[(facility, day)] = now
        now += TICK
    for facility, zone in ZONES.items():
        for day in (around - timedelta(days=1), around, around + timedelta(days=1)):
            assert released[(facility, day)] == 1, (facility, day)
            at = when[(facility, day)]
            local = at.astimezone(ZoneInfo(zone))
            assert local.date() == day + timedelta(days=1)
            utc_midnight = datetime.combine(day + timedelta(days=1), time(), UTC)
            assert at >= utc_midnight, "the UTC-dated partition must have closed"
            assert local.time() >= time(4) or at - utc_midnight < TICK
    assert max(released.values()) == 1


def test_schedule_asks_for_yesterday_of_the_facilities_whose_morning_it_is(
    db, database_url, set_facility, orchestration_settings
):
    resources = {"database": DatabaseResource(url=database_url), "settings": orchestration_settings}
    set_facility("FAC-001", "UTC")
    set_facility("FAC-002", "America/New_York")
    set_facility("FAC-003", "Asia/Kolkata")
    tick = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)  # 04:00 in New York (EST)
    context = dg.build_schedule_context(scheduled_execution_time=tick, resources=resources)

    requests = facility_nightly_schedule(context)

    assert [(r.partition_key, r.run_key) for r in requests] == [
        (
            dg.MultiPartitionKey({"date": "2026-11-19", "facility": "FAC-002"}),
            "facility-nightly-FAC-002-2026-11-19",
        )
    ]
    assert requests[0].partition_key in daily_facility_partitions.get_partition_keys(current_time=tick)
    quiet = dg.build_schedule_context(
        scheduled_execution_time=tick + timedelta(minutes=15), resources=resources
    )
    assert isinstance(facility_nightly_schedule(quiet), dg.SkipReason)
