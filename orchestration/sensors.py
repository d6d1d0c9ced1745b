"""Sensors: drift-triggered retraining (on the drop and when its labeling campaign ends), labels
arriving in Label Studio, promotions made outside Dagster and on-call failure recording (others
append to ``SENSORS``)."""

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import dagster as dg

from assets.common.partitions import daily_facility_partitions
from assets.common.resources import DatabaseResource, ModelRegistryResource
from assets.model_quality.hard_examples import ANNOTATIONS_SEEN, hard_example_weeks, project_week
from assets.model_quality.label_studio import LabelStudio, LabelStudioError
from assets.model_quality.resources import LabelingResource
from assets.retraining.production import PROMOTION_ID, promotion_metadata
from model_lifecycle.recipes import CPU_CAMPAIGN_RECIPE
from orchestration.jobs import hard_example_labels_job, retraining_job
from orchestration.settings import OrchestrationSettings

DRIFT_ASSET = dg.AssetKey("drift_evaluation")


@dataclass
class DriftCursor:
    """Where the sensor stopped reading, which facilities are below the threshold (since which day),
    and the day of each one's last retraining request."""

    after_storage_id: int | None = None
    below: dict[str, str] = field(default_factory=dict)
    requested: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: str | None) -> "DriftCursor":
        return cls(**json.loads(raw)) if raw else cls()

    def dump(self) -> str:
        return json.dumps(
            {"after_storage_id": self.after_storage_id, "below": self.below, "requested": self.requested},
            sort_keys=True,
        )


@dataclass(frozen=True)
class Evaluation:
    storage_id: int
    facility: str
    day: str
    accuracy: float | None


def new_drops(
    cursor: DriftCursor, evaluations: list[Evaluation], threshold: float, every_days: int = 0
) -> list[Evaluation]:
    """Evaluations that call for retraining; updates ``cursor`` in place.

    A facility fires when it newly falls below ``threshold`` and stays in ``cursor.below`` until an
    evaluation at or above the threshold shows it recovered. While it stays below, it fires again
    once an evaluated day is ``every_days`` after its last request (0: never): by then more of its
    drifted days are labeled, and one day of labels was not enough on the harder drifts
    (docs/benchmarks.md, label efficiency). Evaluations without verified samples change nothing.
    """
    due = []
    for e in sorted(evaluations, key=lambda e: e.storage_id):
        cursor.after_storage_id = max(cursor.after_storage_id or 0, e.storage_id)
        if e.accuracy is None:
            continue
        if e.accuracy >= threshold:
            cursor.below.pop(e.facility, None)
            cursor.requested.pop(e.facility, None)
            continue
        if e.facility not in cursor.below:
            cursor.below[e.facility] = e.day
        elif (
            not every_days
            or _days(cursor.requested.get(e.facility, cursor.below[e.facility]), e.day) < every_days
        ):
            continue
        cursor.requested[e.facility] = e.day
        due.append(e)
    return due


def _days(earlier: str, later: str) -> int:
    return (date.fromisoformat(later) - date.fromisoformat(earlier)).days


def _evaluation(record: dg.EventLogRecord) -> Evaluation | None:
    materialization = record.asset_materialization
    if materialization is None or not isinstance(materialization.partition, str):
        return None
    keys = daily_facility_partitions.get_partition_key_from_str(materialization.partition).keys_by_dimension
    value = materialization.metadata.get("accuracy")
    accuracy = value.value if isinstance(value, dg.FloatMetadataValue) else None
    return Evaluation(record.storage_id, keys["facility"], keys["date"], accuracy)


def materializations_after(
    instance: dg.DagsterInstance, asset: dg.AssetKey, after: int | None
) -> tuple[list[dg.EventLogRecord], int | None]:
    """Every materialization of ``asset`` stored after ``after``, oldest first, read in pages; and
    the last storage id seen (the sensor's next cursor)."""
    records: list[dg.EventLogRecord] = []
    while True:
        result = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset, after_storage_id=after), limit=500, ascending=True
        )
        records += result.records
        if result.records:
            after = max(r.storage_id for r in result.records)
        if not result.has_more:
            return records, after


@dg.sensor(
    job=retraining_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launches retraining when a facility's drift_evaluation accuracy falls below "
    "WV_DRIFT_ACCURACY_THRESHOLD (0.94), on its labels since the drop; again every WV_RETRAIN_EVERY_DAYS "
    "evaluated days while it stays below (more drifted days labeled), and on a new drop after it recovers.",
)
def drift_retraining_sensor(
    context: dg.SensorEvaluationContext, settings: dg.ResourceParam[OrchestrationSettings]
) -> dg.SensorResult:
    cursor = DriftCursor.parse(context.cursor)
    threshold = settings.drift_accuracy_threshold
    after = cursor.after_storage_id
    records, after = materializations_after(context.instance, DRIFT_ASSET, after)
    evaluations = [e for r in records if (e := _evaluation(r)) is not None]
    drops = new_drops(cursor, evaluations, threshold, settings.retrain_every_days)
    cursor.after_storage_id = after
    if not drops:
        return dg.SensorResult(skip_reason=f"no facility newly below {threshold}", cursor=cursor.dump())
    facilities = ",".join(sorted({d.facility for d in drops}))
    run_key = "drift-" + "-".join(f"{d.facility}@{d.day}" for d in drops)
    lowest = min(drops, key=lambda d: d.accuracy or 0.0)
    since = {d.facility: cursor.below[d.facility] for d in drops}
    context.log.info("accuracy below %s at %s; launching retraining", threshold, facilities)
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=run_key,
                run_config={
                    "ops": {
                        "retraining_dataset": {"config": {"drift_since": since}},
                        "candidate_model": {"config": {"steps": settings.retrain_steps}},
                    }
                },
                tags={
                    "wv/trigger": "drift",
                    "wv/facilities": facilities,
                    "wv/lowest_accuracy": f"{lowest.accuracy:.4f}",
                    "wv/drift_since": ",".join(f"{f}@{d}" for f, d in sorted(since.items())),
                },
            )
        ],
        cursor=cursor.dump(),
    )


CAMPAIGN_ASSET = dg.AssetKey("labeling_campaign")


@dataclass(frozen=True)
class CampaignEnd:
    storage_id: int
    facility: str
    since: str
    status: str
    labels: int
    wanted: int


def _campaign_end(record: dg.EventLogRecord) -> CampaignEnd | None:
    """A ``labeling_campaign`` materialization that ended its campaign (labels in, or out of days)."""
    materialization = record.asset_materialization
    if materialization is None or not isinstance(materialization.partition, str):
        return None
    meta = {k: v.value for k, v in materialization.metadata.items()}
    if meta.get("status") not in ("complete", "expired") or not meta.get("since"):
        return None

    def count(key: str) -> int:
        value = meta.get(key)
        return value if isinstance(value, int) else 0

    keys = daily_facility_partitions.get_partition_key_from_str(materialization.partition).keys_by_dimension
    return CampaignEnd(
        record.storage_id, keys["facility"], str(meta["since"]), str(meta["status"]), count("labels"),
        count("labels_wanted"),
    )  # fmt: skip


def campaign_finetune(settings: OrchestrationSettings) -> dict[str, Any]:
    """``candidate_model``'s CPU fine-tune after a campaign: the whole backbone (a GPU run trains it
    anyway, with its ``gpu_*`` recipe); ``WV_RETRAIN_STEPS`` sizes it like a drift night's."""
    return {
        "frozen_blocks": CPU_CAMPAIGN_RECIPE.frozen_blocks,
        "lr": CPU_CAMPAIGN_RECIPE.lr,
        "steps": settings.retrain_steps,
    }


@dg.sensor(
    job=retraining_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launches retraining when a facility's labeling campaign ends: its labels since the drop "
    "reached what the campaign's recipe wants (WV_CAMPAIGN_LABELS, else 800 on a CPU / 1,400 on a GPU) or "
    "WV_CAMPAIGN_MAX_DAYS passed. Once per campaign (run key), on every label since the drop, training the "
    "whole backbone on a CPU too.",
)
def campaign_retraining_sensor(
    context: dg.SensorEvaluationContext, settings: dg.ResourceParam[OrchestrationSettings]
) -> dg.SensorResult:
    records, after = materializations_after(
        context.instance, CAMPAIGN_ASSET, int(context.cursor) if context.cursor else None
    )
    ended: dict[tuple[str, str], CampaignEnd] = {}
    for record in records:
        if (end := _campaign_end(record)) is not None:
            ended.setdefault((end.facility, end.since), end)
    cursor = str(after) if after is not None else None
    if not ended:
        return dg.SensorResult(skip_reason="no labeling campaign ended", cursor=cursor)
    requests = [
        dg.RunRequest(
            run_key=f"campaign-{end.facility}@{end.since}",
            run_config={
                "ops": {
                    "retraining_dataset": {
                        "config": {"drift_since": {end.facility: end.since}, "campaign": True}
                    },
                    "candidate_model": {"config": campaign_finetune(settings)},
                }
            },
            tags={
                "wv/trigger": "campaign",
                "wv/facilities": end.facility,
                "wv/drift_since": f"{end.facility}@{end.since}",
                "wv/campaign": end.status,
                "wv/labels": f"{end.labels}/{end.wanted}",
            },
        )
        for end in ended.values()
    ]
    context.log.info("labeling campaigns ended: %s", ", ".join(f"{f}@{s}" for f, s in ended))
    return dg.SensorResult(run_requests=requests, cursor=cursor)


def failure_record(context: dg.RunFailureSensorContext, settings: OrchestrationSettings) -> dict[str, Any]:
    run = context.dagster_run
    steps = sorted({e.step_key for e in context.get_step_failure_events() if e.step_key})
    return {
        "run_id": run.run_id,
        "job_name": run.job_name,
        "partition_key": run.tags.get("dagster/partition"),
        "failed_at": datetime.now(UTC).isoformat(),
        "error": (context.failure_event.message or "")[:4000],
        "failed_steps": steps,
        "run_url": f"http://{settings.dagster_host}:{settings.dagster_port}/runs/{run.run_id}",
    }


@dg.run_failure_sensor(
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Records every failed run for on-call: `orchestration_failures` table and "
    "<state>/oncall/failures.jsonl.",
)
def oncall_failure_sensor(
    context: dg.RunFailureSensorContext,
    database: DatabaseResource,
    settings: dg.ResourceParam[OrchestrationSettings],
) -> None:
    record = failure_record(context, settings)
    with database.connect() as conn:
        conn.execute(
            "INSERT INTO orchestration_failures "
            "(run_id, job_name, partition_key, error, failed_steps, run_url) "
            "VALUES (%(run_id)s, %(job_name)s, %(partition_key)s, %(error)s, %(failed_steps)s, %(run_url)s) "
            "ON CONFLICT (run_id) DO NOTHING",
            record,
        )
    log = settings.state_dir / "oncall" / "failures.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
    context.log.warning("run %s of %s failed; recorded for on-call", record["run_id"], record["job_name"])


def _last_reported_promotion(instance: dg.DagsterInstance) -> int:
    event = instance.get_latest_materialization_event(dg.AssetKey("production_model"))
    materialization = event.asset_materialization if event else None
    value = materialization.metadata.get(PROMOTION_ID) if materialization else None
    return int(value.value) if isinstance(value, dg.IntMetadataValue) and value.value is not None else 0


@dg.sensor(
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Shows approvals and rollbacks made with `wv model approve|rollback` as production_model "
    "materializations, so the UI's lineage ends at the model the edges actually run.",
)
def model_promotion_sensor(
    context: dg.SensorEvaluationContext, model_registry: ModelRegistryResource
) -> dg.SensorResult:
    registry = model_registry.registry()
    after = max(int(context.cursor or 0), _last_reported_promotion(context.instance))
    promotions = registry.history(after_id=after)
    events = [
        dg.AssetMaterialization(
            asset_key="production_model",
            description=f"{p['action']} of {p['version']} by {p['actor']} (wv model)",
            metadata=promotion_metadata(registry.get(p["version"]), p),
        )
        for p in promotions
    ]
    cursor = str(promotions[-1]["id"]) if promotions else str(after)
    return dg.SensorResult(asset_events=events, cursor=cursor)


def _annotations_pulled(instance: dg.DagsterInstance, week: str) -> int:
    """The annotation count the newest ``hard_example_labels`` of ``week`` pulled (0: never pulled)."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("hard_example_labels"), asset_partitions=[week]), limit=1
    ).records
    materialization = records[0].asset_materialization if records else None
    value = materialization.metadata.get(ANNOTATIONS_SEEN) if materialization else None
    return int(value.value) if isinstance(value, dg.IntMetadataValue) and value.value is not None else 0


@dg.sensor(
    job=hard_example_labels_job,
    minimum_interval_seconds=120,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Re-materializes a week's hard_example_labels when its Label Studio project holds more "
    "annotations than the last pull took (annotators work after the weekly export; without this their "
    "labels would wait for someone to re-run the week). Edits of an existing annotation are picked up by "
    "the next pull of that week, not by this sensor.",
)
def hard_example_annotations_sensor(
    context: dg.SensorEvaluationContext, labeling: LabelingResource
) -> dg.SensorResult:
    if not labeling.label_studio_url:
        return dg.SensorResult(skip_reason="no labeling server configured (WV_LABEL_STUDIO_URL)")
    try:
        projects = LabelStudio(labeling.label_studio_url).projects()
    except LabelStudioError as exc:
        return dg.SensorResult(skip_reason=f"Label Studio did not answer: {exc}")
    weeks = set(hard_example_weeks.get_partition_keys())
    requests = []
    for project in projects:
        monday = project_week(str(project.get("title", "")))
        annotations = int(project.get("total_annotations_number") or 0)
        if monday is None or monday.isoformat() not in weeks:
            continue
        week = monday.isoformat()
        if annotations > _annotations_pulled(context.instance, week):
            requests.append(
                dg.RunRequest(
                    run_key=f"labels-{week}-{annotations}",
                    partition_key=week,
                    tags={"wv/trigger": "label-studio", "wv/annotations": str(annotations)},
                )
            )
    if not requests:
        return dg.SensorResult(skip_reason="no week has annotations newer than its last pull")
    return dg.SensorResult(run_requests=requests)


SENSORS: list[dg.SensorDefinition] = [
    drift_retraining_sensor,
    campaign_retraining_sensor,
    hard_example_annotations_sensor,
    oncall_failure_sensor,
    model_promotion_sensor,
]
