"""A tiny Dagster code location for the storage-failover test: a schedule every minute, a sensor
every 2 s and a job whose run lasts long enough to be in flight when the leader dies."""

from __future__ import annotations

import os
import time

import dagster as dg


@dg.op
def beat() -> None:
    time.sleep(float(os.environ.get("HEARTBEAT_RUN_S", "15")))


@dg.job
def heartbeat_job() -> None:
    beat()


heartbeat_schedule = dg.ScheduleDefinition(
    job=heartbeat_job, cron_schedule="* * * * *", default_status=dg.DefaultScheduleStatus.RUNNING
)


@dg.sensor(minimum_interval_seconds=2, default_status=dg.DefaultSensorStatus.RUNNING)
def heartbeat_sensor() -> dg.SkipReason:
    return dg.SkipReason("nothing to do: the tick itself is the heartbeat")


defs = dg.Definitions(jobs=[heartbeat_job], schedules=[heartbeat_schedule], sensors=[heartbeat_sensor])
