"""``hard_example_export`` → ``hard_example_labels``: the week's unsure decisions, labeled by people.

Decisions with a condition confidence in [low, high] (0.65–0.85 by default), one per track,
capped per facility × class so one noisy camera cannot fill the export. Crops and a Prodigy JSONL
manifest (plus Label Studio JSON) go to the labeling folder and, with ``WV_LABEL_STUDIO_URL``, into
the week's Label Studio project (crop, context and the model's guess as a prediction); the export is
recorded in ``hard_example_exports`` and its items in ``hard_examples``. ``hard_example_labels``
brings the annotations back (the project's export, plus any answered Prodigy/Label Studio files)
into ``hard_examples.verified_condition``, which ``retraining_dataset`` trains on.
"""

from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import dagster as dg
import psycopg
from psycopg.types.json import Jsonb

from assets.common.partitions import START_DATE, week_start
from assets.common.resources import DatabaseResource
from assets.common.settings import PipelineSettings
from assets.model_quality.label_studio import LabelStudio
from assets.model_quality.labeling import (
    Decision,
    TaskBatch,
    build_tasks,
    camera_sources,
    import_answers,
    load_decisions,
    pull_answers,
    push_tasks,
)
from assets.model_quality.resources import LabelingResource
from assets.model_quality.simulated_verifier import SimulatedVerifier
from quality.charts import bar_chart, markdown_image
from quality.sampling import sample_rank

OWNERS = ["team:ml-quality"]

hard_example_weeks = dg.WeeklyPartitionsDefinition(
    start_date=START_DATE, timezone="UTC", day_offset=1, end_offset=1
)
"""ISO weeks keyed by their Monday, like the other weekly assets, plus the week in progress: its
hard examples can go to labeling before it ends (a re-export adds the new ones, labels kept)."""


ANNOTATIONS_SEEN = "label_studio_annotations"
"""``hard_example_labels`` metadata: the project's annotation count when it pulled them (the
``hard_example_annotations_sensor`` compares the server's count with it)."""


class HardExampleConfig(dg.Config):
    confidence_low: float | None = None
    """Lower bound (inclusive); empty: WV_HARD_EXAMPLE_LOW (0.65)."""
    confidence_high: float | None = None
    """Upper bound (inclusive); empty: WV_HARD_EXAMPLE_HIGH (0.85)."""
    max_per_stratum: int = 200
    """At most this many examples per facility × predicted class."""


PROJECT_PREFIX = "Hard examples, week of "


def project_title(monday: date) -> str:
    """The Label Studio project of a week's hard examples."""
    return f"{PROJECT_PREFIX}{monday.isoformat()}"


def project_week(title: str) -> date | None:
    """The Monday a project title names (the inverse of ``project_title``); None for other projects."""
    if not title.startswith(PROJECT_PREFIX):
        return None
    try:
        return date.fromisoformat(title.removeprefix(PROJECT_PREFIX))
    except ValueError:
        return None


def annotations_in(client: LabelStudio, title: str) -> int | None:
    """How many annotations the project called ``title`` holds (skipped ones included); None if absent."""
    for project in client.projects():
        if project.get("title") == title:
            return int(project.get("total_annotations_number") or 0)
    return None


def select_hard_examples(decisions: list[Decision], max_per_stratum: int) -> list[Decision]:
    """One decision per track (the least confident), then a stable capped pick per facility × class."""
    per_track: dict[tuple[str, str, str], Decision] = {}
    for d in decisions:
        key = (d.facility_id, d.camera_id, d.track_id)
        if key not in per_track or d.confidence < per_track[key].confidence:
            per_track[key] = d
    strata: dict[tuple[str, str], list[Decision]] = defaultdict(list)
    for d in per_track.values():
        strata[(d.facility_id, d.condition)].append(d)
    chosen: list[Decision] = []
    for stratum in sorted(strata):
        chosen.extend(sorted(strata[stratum], key=lambda d: sample_rank(d.event_id))[:max_per_stratum])
    return chosen


_INSERT = """
INSERT INTO hard_examples (export_id, event_id, facility_id, event_time, package_id, track_id, camera_id,
                           frame_index, bbox, predicted_condition, predicted_confidence, crop_path)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (export_id, event_id) DO UPDATE SET crop_path = EXCLUDED.crop_path,
    frame_index = EXCLUDED.frame_index
"""
"""A re-export keeps the labels its examples already have."""


def record_export(
    conn: psycopg.Connection[Any],
    export_id: str,
    start: date,
    band: tuple[float, float],
    chosen: Sequence[Decision],
    batch: TaskBatch,
) -> Counter[str]:
    """The export and its examples in ``hard_example_exports`` / ``hard_examples`` (examples no longer
    chosen dropped, labels of the others kept); returns the examples per facility/class."""
    counts = Counter(f"{d.facility_id}/{d.condition}" for d in chosen)
    by_id = {t.event_id: t for t in batch.tasks}
    with conn.transaction():
        conn.execute(
            "INSERT INTO hard_example_exports (export_id, week_start, confidence_low, confidence_high, "
            "examples, manifest_path, counts) VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (export_id) DO UPDATE SET confidence_low = EXCLUDED.confidence_low, "
            "confidence_high = EXCLUDED.confidence_high, examples = EXCLUDED.examples, "
            "manifest_path = EXCLUDED.manifest_path, counts = EXCLUDED.counts",
            (
                export_id,
                start,
                band[0],
                band[1],
                len(chosen),
                str(batch.prodigy.resolve()),
                Jsonb(dict(counts)),
            ),
        )
        conn.execute(
            "DELETE FROM hard_examples WHERE export_id = %s AND NOT event_id = ANY(%s)",
            (export_id, [d.event_id for d in chosen]),
        )
        with conn.cursor() as cur:
            cur.executemany(
                _INSERT,
                [
                    (
                        export_id, d.event_id, d.facility_id, d.event_time, d.package_id, d.track_id,
                        d.camera_id, by_id[d.event_id].frame_index, list(d.bbox), d.condition,
                        d.confidence, by_id[d.event_id].image,
                    )
                    for d in chosen
                ],
            )  # fmt: skip
    return counts


@dg.asset(
    partitions_def=hard_example_weeks,
    deps=["package_detections"],
    group_name="model_quality",
    owners=OWNERS,
    kinds={"postgres", "python"},
    tags={"domain": "model_quality"},
    description=(
        "Weekly export of hard examples: decisions with confidence in [WV_HARD_EXAMPLE_LOW, "
        "WV_HARD_EXAMPLE_HIGH], one per track, stratified by facility and class; crops and a Prodigy JSONL "
        "manifest for labeling, recorded in `hard_example_exports` / `hard_examples`."
    ),
)
def hard_example_export(
    context: dg.AssetExecutionContext,
    config: HardExampleConfig,
    database: DatabaseResource,
    labeling: LabelingResource,
    settings: dg.ResourceParam[PipelineSettings],
) -> dg.MaterializeResult:
    low = settings.hard_example_low if config.confidence_low is None else config.confidence_low
    high = settings.hard_example_high if config.confidence_high is None else config.confidence_high
    if not 0 <= low < high <= 1:
        raise dg.Failure(f"hard-example band must satisfy 0 <= low < high <= 1, got [{low}, {high}]")
    monday = week_start(context)
    start = datetime.combine(monday, time.min, tzinfo=UTC)
    export_id = f"hard-{monday.isoformat()}"
    out_dir = labeling.tasks_path() / "hard_examples" / monday.isoformat()
    with database.connect() as conn:
        candidates = load_decisions(database, start, start + timedelta(days=7), confidence=(low, high))
        chosen = select_hard_examples(candidates, config.max_per_stratum)
        verifier = SimulatedVerifier(labeling.truth_path()) if labeling.verifier == "ground-truth" else None
        batch = build_tasks(chosen, camera_sources(conn), out_dir, "hard_examples", verifier)
        counts = record_export(conn, export_id, monday, (low, high), chosen, batch)
        conn.commit()
    pushed = None
    if labeling.label_studio_url:
        truth = verifier.truth()[0] if verifier is not None else None
        client = LabelStudio(labeling.label_studio_url)
        pushed = push_tasks(client, project_title(monday), batch.tasks, truth)
    elif verifier is not None:  # no server: the simulator answers into a file, as a person's export
        answer_file = labeling.answers_path() / "hard_examples" / f"{monday.isoformat()}.label-studio.json"
        verifier.answer(batch.tasks, answer_file)
    per_facility = Counter(d.facility_id for d in chosen)
    metadata: dict[str, Any] = {
        "export_id": export_id,
        "week_start": monday.isoformat(),
        "confidence_band": f"[{low}, {high}]",
        "candidates": len(candidates),
        "examples": len(chosen),
        "per_facility_class": dg.MetadataValue.json(dict(sorted(counts.items()))),
        "crops_rendered": batch.crops,
        "manifest": dg.MetadataValue.path(str(batch.prodigy.resolve())),
        "label_studio_tasks": dg.MetadataValue.path(str(batch.label_studio.resolve())),
    }
    if pushed is not None:
        metadata["label_studio_project"] = pushed.project
        metadata["label_studio_tasks_imported"] = pushed.imported
        metadata["label_studio_tasks_already_there"] = pushed.already_there
        metadata["annotated_by_simulator"] = pushed.annotated
    if per_facility:
        png = bar_chart(f"hard examples, week of {monday}", dict(sorted(per_facility.items())), "examples")
        metadata["chart"] = dg.MetadataValue.md(markdown_image(png, "hard examples per facility"))
    context.log.info("%s: %d hard examples of %d candidates", export_id, len(chosen), len(candidates))
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    partitions_def=hard_example_weeks,
    deps=["hard_example_export"],
    group_name="model_quality",
    owners=OWNERS,
    kinds={"postgres", "python"},
    tags={"domain": "model_quality"},
    description=(
        "The week's hard-example labels: the Label Studio project's annotations (its JSON export, saved to "
        "the answers folder) and any answered Prodigy/Label Studio files there, imported into "
        "`hard_examples.verified_condition`. Re-materialize as annotators work; unchanged labels are no-ops."
    ),
)
def hard_example_labels(
    context: dg.AssetExecutionContext,
    database: DatabaseResource,
    labeling: LabelingResource,
) -> dg.MaterializeResult:
    monday = week_start(context)
    export_id = f"hard-{monday.isoformat()}"
    metadata: dict[str, Any] = {}
    if labeling.label_studio_url:
        client = LabelStudio(labeling.label_studio_url)
        answers = labeling.answers_path() / "hard_examples" / f"{monday.isoformat()}.label-studio.json"
        # counted before the pull: one arriving in between makes the sensor ask again, never miss it
        metadata[ANNOTATIONS_SEEN] = annotations_in(client, project_title(monday)) or 0
        metadata["label_studio_annotated_tasks"] = pull_answers(client, project_title(monday), answers)
        metadata["label_studio_export"] = dg.MetadataValue.path(str(answers.resolve()))
    with database.connect() as conn:
        imported = import_answers(conn, labeling.answers_path())
        examples, labeled, corrected = conn.execute(
            "SELECT count(*), count(verified_condition), "
            "count(*) FILTER (WHERE verified_condition <> predicted_condition) "
            "FROM hard_examples WHERE export_id = %s",
            (export_id,),
        ).fetchone() or (0, 0, 0)
        conn.commit()
    for error in imported.errors:
        context.log.warning("label file: %s", error)
    context.log.info(
        "%s: %d of %d hard examples labeled, %d corrected", export_id, labeled, examples, corrected
    )
    return dg.MaterializeResult(
        metadata={
            **metadata,
            "examples": examples,
            "labeled": labeled,
            "model_corrected": dg.MetadataValue.int(corrected),
            "labels_applied": imported.hard_examples,
            "label_errors": dg.MetadataValue.json([str(e) for e in imported.errors[:20]]),
        }
    )
