"""A drop below the accuracy threshold starts a labeling campaign: the facility's least sure decisions
go to labeling each day until the retraining recipe's labels are back, and its end launches a
retraining that says how many labels it had and how many the recipe wants."""

from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest

from assets.model_quality.label_studio import LabelStudio
from assets.model_quality.resources import LabelingResource
from assets.retraining.assets import is_recent_holdout, load_manifest, retraining_dataset
from assets.retraining.campaign import labeling_campaign, project_title
from contract.proto import warehouse_vision_pb2 as pb
from orchestration.sensors import campaign_retraining_sensor

BEFORE, DROP = date(2025, 3, 10), date(2025, 3, 11)
URI = "synthetic://seed=11&fps=10&start_time=1741586400"


def _campaign(instance: dg.DagsterInstance, resources: dict[str, Any], day: date) -> dict[str, Any]:
    key = dg.MultiPartitionKey({"date": day.isoformat(), "facility": "FAC-002"})
    result = dg.materialize([labeling_campaign], partition_key=key, resources=resources, instance=instance)
    (check,) = result.get_asset_check_evaluations()
    meta = {
        k: v.value for k, v in result.asset_materializations_for_node("labeling_campaign")[0].metadata.items()
    }
    return {**meta, "check_passed": check.passed}


def _trainable(decisions: list[pb.DetectionEvent]) -> list[pb.DetectionEvent]:
    return [d for d in decisions if not is_recent_holdout(d.package_id)]


@pytest.mark.parametrize("server", [False, True], ids=["task files", "label studio"])
def test_a_drop_asks_for_the_least_sure_decisions_until_the_recipe_s_labels_are_back_then_retrains(
    db: psycopg.Connection,
    resources: dict[str, Any],
    write_decisions: Callable[..., list[pb.DetectionEvent]],
    write_truth: Callable[[dict[str, str]], Path],
    request: pytest.FixtureRequest,
    server: bool,
) -> None:
    settings = resources["settings"].model_copy(
        update={"campaign_rate": 0.5, "campaign_daily_quota": 4, "campaign_labels": 6, "campaign_max_days": 5}
    )
    labeling: LabelingResource = resources["labeling"]
    if server:  # the campaign's project on a real Label Studio, annotated through its API, pulled back
        url = request.getfixturevalue("label_studio_url")
        labeling = LabelingResource(**{**labeling.model_dump(), "label_studio_url": url})
    resources = {**resources, "settings": settings, "labeling": labeling}
    days = {day: write_decisions(12, "FAC-002", day, seed=i, confidence=(0.3, 0.99))
            for i, day in enumerate((BEFORE, DROP, DROP + timedelta(days=1)))}  # fmt: skip
    truth = {d.package_id: "torn" for decisions in days.values() for d in decisions}
    write_truth(truth)  # the simulator answers every task, as the demo's verifier does (no crops here)
    for day, accuracy in ((BEFORE, 0.97), (DROP, 0.80), (DROP + timedelta(days=1), 0.85)):
        db.execute(
            "INSERT INTO drift_evaluations (facility_id, eval_date, samples, verified, accuracy) "
            "VALUES ('FAC-002', %s, 10, 10, %s)",
            (day, accuracy),
        )

    with dg.DagsterInstance.ephemeral() as instance:
        quiet = _campaign(instance, resources, BEFORE)
        assert (quiet["status"], quiet["asked_today"]) == ("none", 0)

        first = _campaign(instance, resources, DROP)
        # half of the day's 12 tracks, capped by the labelers' quota of 4; answered the same night
        assert (first["status"], first["day_number"], first["asked_today"], first["labels"]) == (
            "asking",
            1,
            4,
            4,
        )
        asked = db.execute(
            "SELECT package_id, predicted_confidence, verified_condition FROM hard_examples WHERE export_id = %s",
            (f"campaign-FAC-002-{DROP}",),
        ).fetchall()
        least_sure = sorted(_trainable(days[DROP]), key=lambda d: d.condition_confidence)[:4]
        assert {p for p, _, _ in asked} == {d.package_id for d in least_sure}
        assert {c for _, _, c in asked} == {"torn"}
        again = _campaign(instance, resources, DROP)  # a re-run asks for the same, no more
        assert (again["asked_today"], again["labels"]) == (4, 4)

        second = _campaign(instance, resources, DROP + timedelta(days=1))
        assert (second["status"], second["asked_before"], second["asked_today"], second["labels"]) == (
            "complete", 4, 2, 6,  # only the 2 labels still wanted
        )  # fmt: skip
        assert second["since"] == DROP.isoformat() and second["check_passed"]
        sources = {s for (s,) in db.execute("SELECT DISTINCT label_source FROM hard_examples")}
        assert sources == {"label-studio" if server else "ground-truth"}
        if server:
            client = LabelStudio(labeling.label_studio_url)
            tasks = client.export(client.project(project_title("FAC-002", DROP), ""))
            assert len(tasks) == 6 and all(t["annotations"] for t in tasks)  # one project for the campaign

        context = dg.build_sensor_context(instance=instance, resources={"settings": settings})
        result = campaign_retraining_sensor(context)
        assert isinstance(result, dg.SensorResult)
        (request,) = result.run_requests or []
        assert request.run_key == f"campaign-FAC-002@{DROP}"
        assert request.run_config["ops"]["retraining_dataset"]["config"]["drift_since"] == {
            "FAC-002": str(DROP)
        }
        assert (request.tags["wv/campaign"], request.tags["wv/labels"]) == ("complete", "6/6")
        ops = request.run_config["ops"]
        assert ops["candidate_model"]["config"]["frozen_blocks"] == 0  # the whole backbone, on a CPU too
        later = campaign_retraining_sensor(
            dg.build_sensor_context(instance=instance, cursor=result.cursor, resources={"settings": settings})
        )
        assert isinstance(later, dg.SensorResult) and not later.run_requests

    for camera in {d.camera_id for decisions in days.values() for d in decisions}:  # pixels to train on
        db.execute("INSERT INTO cameras (facility_id, camera_id, source_uri) VALUES ('FAC-002', %s, %s) "
                   "ON CONFLICT (facility_id, camera_id) DO UPDATE SET source_uri = EXCLUDED.source_uri",
                   (camera, URI))  # fmt: skip
    dataset = dg.materialize(
        [retraining_dataset],
        resources=resources,
        run_config={
            "ops": {
                "retraining_dataset": {"config": {**ops["retraining_dataset"]["config"], "replay_frames": 0}}
            }
        },
    )
    meta = dataset.asset_materializations_for_node("retraining_dataset")[0].metadata
    selection = load_manifest(Path(str(meta["manifest"].value))).selection
    assert (selection["drifted_packages"], selection["labels_wanted"], selection["recipe"]) == (
        6,
        6,
        "cpu-campaign",
    )
    assert selection["label_budget"] == 0  # every label since the drop
    (check,) = dataset.get_asset_check_evaluations()
    assert check.check_name == "labels_for_recipe" and check.passed
