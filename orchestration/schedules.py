"""Schedules: nightly and weekly runs of the model-quality loop (others append theirs to ``SCHEDULES``)."""

from datetime import timedelta

import dagster as dg

from orchestration.jobs import detections_quality_job, nightly_model_quality_job, weekly_hard_examples_job
from orchestration.settings import OrchestrationSettings


@dg.schedule(
    job=nightly_model_quality_job,
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="02:00 UTC: yesterday's verified samples and drift evaluation, one run per facility.",
)
def nightly_model_quality_schedule(
    context: dg.ScheduleEvaluationContext, settings: dg.ResourceParam[OrchestrationSettings]
) -> list[dg.RunRequest]:
    day = (context.scheduled_execution_time - timedelta(days=1)).date().isoformat()
    return [
        dg.RunRequest(
            run_key=f"nightly-{day}-{facility}",
            partition_key=dg.MultiPartitionKey({"date": day, "facility": facility}),
            tags={"wv/facility": facility},
        )
        for facility in settings.facilities
    ]


@dg.schedule(
    job=weekly_hard_examples_job,
    cron_schedule="0 3 * * 1",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Monday 03:00 UTC: last week's hard-example export and a fresh retraining dataset.",
)
def weekly_hard_examples_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    monday = (context.scheduled_execution_time - timedelta(days=7)).date()
    monday -= timedelta(days=monday.weekday())
    return dg.RunRequest(run_key=f"weekly-{monday.isoformat()}", partition_key=monday.isoformat())


detections_quality_schedule = dg.ScheduleDefinition(
    name="detections_quality_schedule",
    job=detections_quality_job,
    cron_schedule="30 1 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="01:30 UTC: data-quality suite on the newest day of detections.",
)

SCHEDULES: list[dg.ScheduleDefinition] = [
    nightly_model_quality_schedule,
    weekly_hard_examples_schedule,
    detections_quality_schedule,
]
