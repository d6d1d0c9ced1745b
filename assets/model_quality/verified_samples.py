"""``verified_samples``: a stratified 1 % of each facility-day's decisions, checked by people.

The sample goes out as Prodigy JSONL and Label Studio JSON (with crops where pixels exist) and
the answers come back from the labeling folder into ``verified_samples``. Re-materializing a
partition picks the same decisions and imports whatever answers arrived since.
"""

from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from assets.common.partitions import daily_facility_partitions, facility_day
from assets.common.resources import DatabaseResource
from assets.common.settings import PipelineSettings
from assets.model_quality.labeling import (
    build_tasks,
    camera_sources,
    import_answers,
    load_decisions,
)
from assets.model_quality.resources import LabelingResource
from assets.model_quality.simulated_verifier import SimulatedVerifier
from quality.sampling import stratified_sample, stratum_counts

OWNERS = ["team:ml-quality"]
DAILY_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(hours=36), warn_window=timedelta(hours=28)
)
"""A facility-day is due the night after it ends; a day and a half without one is a failure."""

CHECK = dg.AssetCheckSpec(
    "verified_samples_expectations",
    asset="verified_samples",
    blocking=True,
    description="GX suite `verified_samples`: unique ids, known classes, confidences in [0, 1].",
)


class VerifiedSamplesConfig(dg.Config):
    sample_rate: float | None = None
    """Share of decisions sampled per class; empty: WV_VERIFIED_SAMPLE_RATE (1 %)."""
    min_per_class: int = 1
    """Every predicted class that occurred is sampled at least this often."""


_UPSERT = """
INSERT INTO verified_samples (event_id, facility_id, sample_date, event_time, package_id, camera_id,
                              model_version, predicted_condition, predicted_confidence, crop_path,
                              embedding, track_id, frame_index, bbox)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (event_id) DO UPDATE SET crop_path = coalesce(EXCLUDED.crop_path, verified_samples.crop_path),
    frame_index = coalesce(EXCLUDED.frame_index, verified_samples.frame_index)
"""


def day_bounds(day: Any) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


@dg.asset(
    partitions_def=daily_facility_partitions,
    deps=["package_detections"],
    group_name="model_quality",
    owners=OWNERS,
    kinds={"postgres", "python"},
    tags={"domain": "model_quality"},
    freshness_policy=DAILY_FRESHNESS,
    check_specs=[CHECK],
    description=(
        "Stratified sample (WV_VERIFIED_SAMPLE_RATE, 1 % by default, at least one per predicted class) of "
        "the facility-day's decisions. Exports Prodigy JSONL and Label Studio JSON tasks (with crops for "
        "synthetic cameras) to the labeling folder and imports answered files from it into "
        "`verified_samples`."
    ),
)
def verified_samples(
    context: dg.AssetExecutionContext,
    config: VerifiedSamplesConfig,
    database: DatabaseResource,
    labeling: LabelingResource,
    settings: dg.ResourceParam[PipelineSettings],
) -> dg.MaterializeResult:
    facility, day = facility_day(context)
    rate = config.sample_rate or settings.verified_sample_rate
    start, end = day_bounds(day)
    out_dir = labeling.tasks_path() / facility / day.isoformat()
    with database.connect() as conn:
        decisions = load_decisions(database, start, end, facility)
        sample = stratified_sample(
            decisions,
            key=lambda d: d.event_id,
            stratum=lambda d: d.condition,
            rate=rate,
            minimum=config.min_per_class,
        )
        verifier = SimulatedVerifier(labeling.truth_path()) if labeling.verifier == "ground-truth" else None
        batch = build_tasks(sample, camera_sources(conn), out_dir, "verification", verifier)
        by_id = {t.event_id: t for t in batch.tasks}
        with conn.cursor() as cur:
            cur.executemany(
                _UPSERT,
                [
                    (
                        d.event_id,
                        facility,
                        day,
                        d.event_time,
                        d.package_id,
                        d.camera_id,
                        d.model_version,
                        d.condition,
                        d.confidence,
                        by_id[d.event_id].image,
                        d.embedding,
                        d.track_id,
                        by_id[d.event_id].frame_index,
                        list(d.bbox),
                    )
                    for d in sample
                ],
            )
        conn.commit()
        ground_truth = None
        if verifier is not None:
            answer_file = (
                labeling.answers_path() / facility / day.isoformat() / "ground-truth.label-studio.json"
            )
            ground_truth = verifier.answer(batch.tasks, answer_file)
        imported = import_answers(conn, labeling.answers_path())
        cursor = conn.execute(
            "SELECT event_id, sample_date::text AS sample_date, predicted_condition, verified_condition, "
            "predicted_confidence FROM verified_samples WHERE facility_id = %s AND sample_date = %s",
            (facility, day),
        )
        frame = pd.DataFrame(cursor.fetchall(), columns=[c.name for c in cursor.description or []])
    verified = int(frame["verified_condition"].notna().sum())
    for error in imported.errors:
        context.log.warning("label file: %s", error)
    metadata: dict[str, Any] = {
        "decisions": dg.MetadataValue.int(len(decisions)),
        "sampled": dg.MetadataValue.int(len(frame)),
        "verified": dg.MetadataValue.int(verified),
        "verified_share": dg.MetadataValue.float(round(verified / len(frame), 4) if len(frame) else 0.0),
        "sample_rate": dg.MetadataValue.float(rate),
        "per_class": dg.MetadataValue.json(stratum_counts(sample, lambda d: d.condition)),
        "crops_rendered": dg.MetadataValue.int(batch.crops),
        "prodigy_tasks": dg.MetadataValue.path(str(batch.prodigy.resolve())),
        "label_studio_tasks": dg.MetadataValue.path(str(batch.label_studio.resolve())),
        "answer_files": dg.MetadataValue.int(imported.files),
        "labels_applied": dg.MetadataValue.int(imported.verified_samples),
        "label_errors": dg.MetadataValue.json([str(e) for e in imported.errors[:20]]),
    }
    if ground_truth is not None:
        metadata["ground_truth_answers"] = dg.MetadataValue.int(ground_truth[0])
        for problem in ground_truth[1]:
            context.log.warning("truth file: %s", problem)
    context.log.info(
        "%s %s: %d of %d decisions sampled, %d verified", facility, day, len(frame), len(decisions), verified
    )
    return dg.MaterializeResult(
        metadata=metadata, check_results=[expectations_check(frame, day, settings.state_dir)]
    )


def expectations_check(frame: pd.DataFrame, day: Any, state_dir: Path) -> dg.AssetCheckResult:
    """The GX suite as a blocking check: a malformed sample must not reach drift evaluation."""
    from quality.expectations import verified_samples_suite
    from quality.validate import validate

    outcome = validate(frame, "verified_samples", verified_samples_suite(day), state_dir)
    return dg.AssetCheckResult(
        check_name=CHECK.name,
        passed=outcome.success,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "rows": outcome.rows,
            "evaluated_expectations": len(outcome.outcomes),
            "failing_expectations": dg.MetadataValue.json(outcome.failures_table()),
            "data_docs": dg.MetadataValue.url(outcome.docs_path or ""),
        },
    )
