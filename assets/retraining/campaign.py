"""``labeling_campaign``: a drifted facility labels more, the model's least sure decisions first,
until the retraining recipe has the labels it needs.

The regular 1 % sample verifies ≈ 490 packages a day at a facility of the reference's size and ≈ 78
in the demo; ``six_weeks_later`` needs ≈ 1,400 verified drifted packages and the GPU recipe to pass
94 % (docs/benchmarks.md, issue 21). From the day a facility's ``drift_evaluation`` falls below
WV_DRIFT_ACCURACY_THRESHOLD, each night's partition of that facility sends ``WV_CAMPAIGN_RATE`` of
the day's package tracks to labeling (one decision per track, least confident first; packages
already sampled or held out for judging candidates are skipped), capped by WV_CAMPAIGN_DAILY_QUOTA
and by what is still wanted. The tasks are recorded as a hard-example export (``campaign-FAC-DAY``,
so ``retraining_dataset`` trains on their labels like any hard example), go to the campaign's Label
Studio project (or task files) and their answers are pulled back every night. The campaign ends
when the labels are in (``complete``), after WV_CAMPAIGN_MAX_DAYS (``expired``) or when the
facility recovers; ``campaign_retraining_sensor`` then launches retraining on every label since the
drop. The simulator answers in the demo (``labeling`` resource's ground-truth verifier).
"""

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import dagster as dg
import psycopg

from assets.common.partitions import daily_facility_partitions, facility_day
from assets.common.resources import DatabaseResource
from assets.common.settings import PipelineSettings
from assets.model_quality.hard_examples import record_export
from assets.model_quality.label_studio import LabelStudio
from assets.model_quality.labeling import (
    Decision,
    build_tasks,
    camera_sources,
    import_answers,
    load_decisions,
    pull_answers,
    push_tasks,
)
from assets.model_quality.resources import LabelingResource
from assets.model_quality.simulated_verifier import SimulatedVerifier
from assets.retraining.assets import is_recent_holdout
from quality.campaign import CampaignDay, campaign_day, campaign_start, least_sure

OWNERS = ["team:ml-quality"]

CAMPAIGN_CHECK = dg.AssetCheckSpec(
    "campaign_not_expired",
    asset="labeling_campaign",
    description=(
        "Warns when a campaign ran out of days before the labels the retraining recipe wants came back: "
        "the retraining it launches trains on fewer (raise WV_CAMPAIGN_RATE or the labelers' quota)."
    ),
)


def export_id(facility: str, day: date) -> str:
    """The hard-example export holding one facility-day's campaign tasks."""
    return f"campaign-{facility}-{day.isoformat()}"


def project_title(facility: str, since: date) -> str:
    """The Label Studio project of one campaign (all its days)."""
    return f"Labeling campaign {facility} from {since.isoformat()}"


_PACKAGES = """
SELECT package_id, bool_or(labeled) FROM (
    SELECT package_id, verified_condition IS NOT NULL AS labeled FROM verified_samples
    WHERE facility_id = %(facility)s AND event_time >= %(start)s AND event_time < %(end)s
    UNION ALL
    SELECT package_id, verified_condition IS NOT NULL FROM hard_examples
    WHERE facility_id = %(facility)s AND event_time >= %(start)s AND event_time < %(end)s
      AND export_id <> %(export)s
) p GROUP BY package_id
"""
"""The facility's packages sent to labeling in [start, end) — verified samples, hard examples, campaign
tasks of other days — and whether each has a label yet."""


def trainable_packages(
    conn: psycopg.Connection[Any], facility: str, since: date, day: date, export: str
) -> dict[str, bool]:
    """Package → labeled, for the packages asked since ``since`` up to ``day`` that retraining trains on
    (the recent hold-out's packages are judged on, never trained on)."""
    start = datetime.combine(since, time.min, tzinfo=UTC)
    end = datetime.combine(day, time.min, tzinfo=UTC) + timedelta(days=1)
    rows = conn.execute(_PACKAGES, {"facility": facility, "start": start, "end": end, "export": export})
    return {package: bool(labeled) for package, labeled in rows if not is_recent_holdout(package)}


@dg.asset(
    partitions_def=daily_facility_partitions,
    deps=["drift_evaluation"],
    group_name="retraining",
    owners=OWNERS,
    kinds={"postgres", "python"},
    tags={"domain": "retraining"},
    check_specs=[CAMPAIGN_CHECK],
    description=(
        "Drift-triggered labeling campaign: while the facility is below WV_DRIFT_ACCURACY_THRESHOLD, "
        "WV_CAMPAIGN_RATE of the day's package tracks (least confident first, at most WV_CAMPAIGN_DAILY_QUOTA) "
        "go to labeling as the hard-example export `campaign-FAC-DAY`, until the retraining recipe's labels "
        "(WV_CAMPAIGN_LABELS, else 400 on a CPU / 1,400 on a GPU) are back or WV_CAMPAIGN_MAX_DAYS pass; "
        "the campaign's answers come back every night. Its end launches retraining (campaign sensor)."
    ),
)
def labeling_campaign(
    context: dg.AssetExecutionContext,
    database: DatabaseResource,
    labeling: LabelingResource,
    settings: dg.ResourceParam[PipelineSettings],
) -> dg.MaterializeResult:
    facility, day = facility_day(context)
    policy = settings.campaign_policy()
    export = export_id(facility, day)
    metadata: dict[str, Any] = {}
    with database.connect() as conn:
        evaluations = conn.execute(
            "SELECT eval_date, accuracy FROM drift_evaluations WHERE facility_id = %s AND eval_date <= %s",
            (facility, day),
        ).fetchall()
        since = campaign_start(evaluations, day, settings.drift_accuracy_threshold)
        if since is None or policy.rate == 0:
            state = campaign_day(policy, None, day, 0, 0, 0)
            return _result(context, settings, state, day, facility, [], 0, 0, metadata)
        packages = trainable_packages(conn, facility, since, day, export)
        start = datetime.combine(day, time.min, tzinfo=UTC)
        decisions = load_decisions(database, start, start + timedelta(days=1), facility)
        tracks = len({(d.camera_id, d.track_id) for d in decisions})
        state = campaign_day(policy, since, day, sum(packages.values()), len(packages), tracks)
        eligible = [
            d for d in decisions if d.package_id not in packages and not is_recent_holdout(d.package_id)
        ]
        chosen = least_sure(
            eligible, lambda d: f"{d.camera_id}/{d.track_id}", lambda d: d.confidence, state.ask
        )
        client = LabelStudio(labeling.label_studio_url) if labeling.label_studio_url else None
        if chosen:
            verifier = (
                SimulatedVerifier(labeling.truth_path()) if labeling.verifier == "ground-truth" else None
            )
            out_dir = labeling.tasks_path() / "campaigns" / facility / day.isoformat()
            batch = build_tasks(chosen, camera_sources(conn), out_dir, "campaign", verifier)
            record_export(conn, export, day, (0.0, 1.0), chosen, batch)
            conn.commit()
            metadata["export_id"] = export
            metadata["tasks"] = dg.MetadataValue.path(str(batch.label_studio.resolve()))
            if client is not None:
                truth = verifier.truth()[0] if verifier is not None else None
                pushed = push_tasks(client, project_title(facility, since), batch.tasks, truth)
                metadata["label_studio_project"] = pushed.project
            elif verifier is not None:  # no server: the simulator answers into a file, as a person's export
                answer_file = labeling.answers_path() / "campaigns" / facility / f"{day}.label-studio.json"
                verifier.answer(batch.tasks, answer_file)
        if client is not None:  # every night: whatever the annotators did since the campaign began
            answers = labeling.answers_path() / "campaigns" / facility / f"{since}.label-studio.json"
            metadata["label_studio_annotated"] = pull_answers(client, project_title(facility, since), answers)
        imported = import_answers(conn, labeling.answers_path())
        labels = sum(trainable_packages(conn, facility, since, day, "").values())
        conn.commit()
    for error in imported.errors:
        context.log.warning("label file: %s", error)
    if labels >= policy.labels_wanted:  # today's answers completed it
        state = replace(state, status="complete", ask=0)
    return _result(context, settings, state, day, facility, chosen, tracks, labels, metadata)


def _result(
    context: dg.AssetExecutionContext,
    settings: PipelineSettings,
    state: CampaignDay,
    day: date,
    facility: str,
    chosen: Sequence[Decision],
    tracks: int,
    labels: int,
    metadata: dict[str, Any],
) -> dg.MaterializeResult:
    """The partition's metadata (what the campaign sensor reads) and its expiry check."""
    policy = settings.campaign_policy()
    context.log.info(
        "%s %s: campaign %s (day %d since %s): %d asked today, %d of %d labels",
        facility, day, state.status, state.day_number, state.since, len(chosen), labels, policy.labels_wanted,
    )  # fmt: skip
    return dg.MaterializeResult(
        metadata={
            **metadata,
            "status": state.status,
            "since": state.since.isoformat() if state.since else "",
            "day_number": state.day_number,
            "tracks": tracks,
            "asked_today": len(chosen),
            "asked_before": state.asked,
            "labels": labels,
            "labels_wanted": policy.labels_wanted,
            "recipe": settings.retrain_recipe().name,
            "rate": dg.MetadataValue.float(policy.rate),
            "daily_quota": policy.daily_quota,
            "max_days": policy.max_days,
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=CAMPAIGN_CHECK.name,
                passed=state.status != "expired",
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"labels": labels, "labels_wanted": policy.labels_wanted, "status": state.status},
            )
        ],
    )
