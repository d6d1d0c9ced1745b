"""Annotations made in Label Studio after the weekly export come back without anyone re-running the
week: the sensor compares each week's project with what its last ``hard_example_labels`` pulled."""

from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from assets.common.resources import DatabaseResource
from assets.model_quality.hard_examples import hard_example_labels, project_title
from assets.model_quality.label_studio import LabelStudio
from assets.model_quality.labeling import push_tasks
from assets.model_quality.resources import LabelingResource
from orchestration.sensors import hard_example_annotations_sensor
from quality.labeling import LabelTask, label_studio_result

MONDAY = date(2025, 6, 2)


def _task(i: int) -> LabelTask:
    return LabelTask(
        event_id=f"evt-sensor-{i}", facility_id="FAC-001", camera_id="cam-a", package_id=f"PKG-S{i}",
        track_id=f"t{i}", event_time="2025-03-11T06:00:00+00:00", bbox=(0.1, 0.1, 0.3, 0.3),
        predicted="ok", confidence=0.7, model_version="v-test",
    )  # fmt: skip


def _tick(instance: dg.DagsterInstance, labeling: LabelingResource) -> dg.SensorResult:
    context = dg.build_sensor_context(instance=instance, resources={"labeling": labeling})
    result = hard_example_annotations_sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def _requested(instance: dg.DagsterInstance, labeling: LabelingResource) -> list[dg.RunRequest]:
    """This test's week's run requests (the session's Label Studio holds other tests' weeks too)."""
    requests = _tick(instance, labeling).run_requests or []
    return [r for r in requests if r.partition_key == MONDAY.isoformat()]


@pytest.mark.timeout(180)
def test_new_annotations_launch_that_weeks_labels_once(
    dagster_instance: dg.DagsterInstance, database_url: str, label_studio_url: str, tmp_path: Path
) -> None:
    labeling = LabelingResource(
        export_dir=str(tmp_path / "tasks"),
        import_dir=str(tmp_path / "answers"),
        label_studio_url=label_studio_url,
    )
    client = LabelStudio(label_studio_url)
    pushed = push_tasks(client, project_title(MONDAY), [_task(0), _task(1)])
    assert not _requested(dagster_instance, labeling)  # exported, nobody has labeled yet

    first = {int(t["id"]): t for t in client.tasks(pushed.project)}
    client.annotate(min(first), label_studio_result("torn"))
    (request,) = _requested(dagster_instance, labeling)
    assert (request.partition_key, request.run_key) == (MONDAY.isoformat(), f"labels-{MONDAY}-1")
    assert hard_example_annotations_sensor.job_name == "pull_hard_example_labels"

    dg.materialize(
        [hard_example_labels],
        instance=dagster_instance,
        partition_key=MONDAY.isoformat(),
        resources={"database": DatabaseResource(url=database_url), "labeling": labeling},
    )
    assert not _requested(dagster_instance, labeling)  # pulled: nothing new

    client.annotate(max(first), label_studio_result("ok"))
    (again,) = _requested(dagster_instance, labeling)
    assert again.run_key == f"labels-{MONDAY}-2"


def test_without_a_labeling_server_the_sensor_skips_saying_why(
    dagster_instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    result = _tick(
        dagster_instance, LabelingResource(export_dir=str(tmp_path / "t"), import_dir=str(tmp_path / "a"))
    )
    assert not result.run_requests and "WV_LABEL_STUDIO_URL" in str(result.skip_reason)
