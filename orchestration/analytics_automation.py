"""Jobs and schedules of facility analytics and ERP sync.

The nightly run of a facility-day starts at 04:00 in the facility's own time zone
(``facilities.timezone``), not at a UTC hour: one schedule ticks every 15 minutes (time zones
with :30 and :45 offsets included) and asks for exactly the facility-days whose release instant
fell in the last tick. The partition keys are UTC-dated, so a day can only be requested once
the UTC day of the same date has ended too: east of UTC+4 the run therefore starts at UTC
midnight (09:00 in Tokyo). Every release instant falls in exactly one tick, so each facility-day
is requested once; ``run_key`` guards against a tick evaluated twice.
"""

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import dagster as dg

from assets.common.partitions import daily_facility_partitions, weekly_partitions
from assets.common.resources import DatabaseResource
from orchestration.jobs import LIGHT_K8S
from orchestration.settings import OrchestrationSettings

NIGHTLY_LOCAL_TIME = time(4, 0)
"""Local time at which yesterday's facility-day is computed (after the local night's stragglers)."""
TICK = timedelta(minutes=15)

facility_nightly_job = dg.define_asset_job(
    "facility_nightly_analytics",
    selection=dg.AssetSelection.assets("facility_daily_analytics", "erp_sync"),
    partitions_def=daily_facility_partitions,
    description="A facility's local yesterday: analytics rollup, then ERP sync of its outbox messages.",
    executor_def=dg.in_process_executor,
    tags={"wv/job": "facility_nightly_analytics", "dagster-k8s/config": LIGHT_K8S},
)

network_weekly_job = dg.define_asset_job(
    "weekly_network_report",
    selection=dg.AssetSelection.assets("network_weekly_report"),
    partitions_def=weekly_partitions,
    description="Last week's network report from the daily rollups.",
    tags={"wv/job": "weekly_network_report", "dagster-k8s/config": LIGHT_K8S},
)


def release_instant(day: date, timezone: str) -> datetime:
    """When facility-day ``day`` is due: 04:00 local the next day, but not before its UTC partition closes."""
    following = day + timedelta(days=1)
    local = datetime.combine(following, NIGHTLY_LOCAL_TIME, ZoneInfo(timezone))
    return max(local, datetime.combine(following, time(), UTC))


def due_facility_days(
    now: datetime, timezones: Mapping[str, str], tick: timedelta = TICK
) -> list[tuple[str, date]]:
    """The (facility, local day) pairs whose release instant lies in ``(now - tick, now]``."""
    due = []
    for facility, timezone in timezones.items():
        yesterday = now.astimezone(ZoneInfo(timezone)).date() - timedelta(days=1)
        if now - tick < release_instant(yesterday, timezone) <= now:
            due.append((facility, yesterday))
    return due


def facility_timezones(database: DatabaseResource, facilities: Iterable[str], default: str) -> dict[str, str]:
    """Each configured facility's time zone from ``facilities`` (the default for ones not seeded yet)."""
    wanted = list(facilities)
    with database.connect() as conn:
        rows = conn.execute(
            "SELECT facility_id, timezone FROM facilities WHERE facility_id = ANY(%s)", (wanted,)
        ).fetchall()
    known = dict(rows)
    return {f: known.get(f, default) for f in wanted}


@dg.schedule(
    job=facility_nightly_job,
    cron_schedule="*/15 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every facility's local yesterday at 04:00 facility time: analytics rollup and ERP sync.",
)
def facility_nightly_schedule(
    context: dg.ScheduleEvaluationContext,
    database: DatabaseResource,
    settings: dg.ResourceParam[OrchestrationSettings],
) -> dg.SkipReason | list[dg.RunRequest]:
    now = context.scheduled_execution_time.astimezone(UTC)
    due = due_facility_days(
        now, facility_timezones(database, settings.facilities, settings.facility_timezone)
    )
    if not due:
        return dg.SkipReason(f"no facility reached {NIGHTLY_LOCAL_TIME:%H:%M} local time in this tick")
    return [
        dg.RunRequest(
            run_key=f"facility-nightly-{facility}-{day.isoformat()}",
            partition_key=dg.MultiPartitionKey({"date": day.isoformat(), "facility": facility}),
            tags={"wv/facility": facility},
        )
        for facility, day in due
    ]


@dg.schedule(
    job=network_weekly_job,
    cron_schedule="0 18 * * 1",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Monday 18:00 UTC (after every facility's Sunday is in): last week's network report.",
)
def network_weekly_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    monday = context.scheduled_execution_time.date() - timedelta(days=7)
    monday -= timedelta(days=monday.weekday())
    return dg.RunRequest(run_key=f"network-weekly-{monday.isoformat()}", partition_key=monday.isoformat())


JOBS = [facility_nightly_job, network_weekly_job]
SCHEDULES = [facility_nightly_schedule, network_weekly_schedule]
