"""Hard examples through a real Label Studio: the week's unsure decisions become a project whose
tasks carry the crop and the model's guess, the simulator annotates them through the API as a person
would, the annotations come back into ``hard_examples`` and ``retraining_dataset`` trains on them (those of
packages outside the recent hold-out)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg

from assets.model_quality.hard_examples import hard_example_export, hard_example_labels, project_title
from assets.model_quality.label_studio import LabelStudio
from assets.model_quality.resources import LabelingResource
from assets.retraining.assets import is_recent_holdout, load_manifest, retraining_dataset
from bench.fixtures.events import EventFactory
from contract.proto import warehouse_vision_pb2 as pb
from realtime.storage.writer import EventWriter, prepare

MONDAY = date(2025, 3, 10)
START = datetime(2025, 3, 11, 6, tzinfo=UTC)
CAMERA = ("FAC-001", "cam-a", f"synthetic://seed=11&fps=10&start_time={START.timestamp():.0f}")
TRUTH = ["wet", "ok", "torn", "crushed", "ok", "open"]


def _unsure_decisions(database_url: str) -> list[pb.DetectionEvent]:
    """Six decisions of one synthetic camera the model called `ok` at 0.70–0.80 confidence."""
    factory = EventFactory(CAMERA[0], seed=4)
    decisions = []
    for i in range(len(TRUTH)):
        event = factory.decision(
            event_time=START + timedelta(seconds=7 * i), condition="ok", condition_confidence=0.7 + 0.02 * i
        )
        event.camera_id, event.package_id = CAMERA[1], f"PKG-H{i}"
        event.bbox.CopyFrom(pb.BoundingBox(x1=0.2, y1=0.3, x2=0.35, y2=0.5))
        decisions.append(event)
    with psycopg.connect(database_url) as conn:
        prepare(conn)
        conn.execute("INSERT INTO cameras (facility_id, camera_id, source_uri) VALUES (%s, %s, %s)", CAMERA)
        EventWriter().write(conn, decisions)
        conn.commit()
    return decisions


def _with_server(labeling: LabelingResource, url: str) -> LabelingResource:
    fields = {name: getattr(labeling, name) for name in ("export_dir", "import_dir", "truth_dir", "verifier")}
    return LabelingResource(**fields, label_studio_url=url)


def test_hard_examples_go_to_label_studio_and_its_annotations_feed_the_retraining_dataset(
    db: psycopg.Connection,
    database_url: str,
    resources: dict[str, Any],
    write_truth: Any,
    label_studio_url: str,
    tmp_path: Path,
) -> None:
    decisions = _unsure_decisions(database_url)
    write_truth({d.package_id: TRUTH[i] for i, d in enumerate(decisions)})
    resources = {**resources, "labeling": _with_server(resources["labeling"], label_studio_url)}

    export = dg.materialize([hard_example_export], resources=resources, partition_key=MONDAY.isoformat())
    meta = export.asset_materializations_for_node("hard_example_export")[0].metadata
    assert meta["examples"].value == 6 and meta["crops_rendered"].value == 6
    assert meta["label_studio_tasks_imported"].value == 6 and meta["annotated_by_simulator"].value == 6

    client = LabelStudio(label_studio_url)
    project = client.project(project_title(MONDAY), "")
    tasks = {t["data"]["event_id"]: t for t in client.export(project)}
    assert set(tasks) == {d.event_id for d in decisions}
    for task in tasks.values():
        assert task["data"]["image"].startswith("data:image/png;base64,")
        assert "model says ok" in task["data"]["summary"]
        assert len(task["annotations"]) == 1

    labels = dg.materialize([hard_example_labels], resources=resources, partition_key=MONDAY.isoformat())
    meta = labels.asset_materializations_for_node("hard_example_labels")[0].metadata
    assert (meta["labeled"].value, meta["model_corrected"].value) == (6, 4)
    rows = dict(db.execute("SELECT package_id, verified_condition FROM hard_examples").fetchall())
    assert rows == {d.package_id: TRUTH[i] for i, d in enumerate(decisions)}
    assert {s for (s,) in db.execute("SELECT DISTINCT label_source FROM hard_examples")} == {"label-studio"}

    again = dg.materialize([hard_example_export], resources=resources, partition_key=MONDAY.isoformat())
    meta = again.asset_materializations_for_node("hard_example_export")[0].metadata
    assert (meta["label_studio_tasks_imported"].value, meta["annotated_by_simulator"].value) == (0, 0)

    dataset = dg.materialize(
        [retraining_dataset],
        resources=resources,
        run_config={"ops": {"retraining_dataset": {"config": {"replay_frames": 0}}}},
    )
    manifest = dataset.asset_materializations_for_node("retraining_dataset")[0].metadata["manifest"]
    trained = load_manifest(Path(str(manifest.value)))
    learnt = sorted(condition for ref in trained.train for _, condition in ref.overrides)
    trainable = [TRUTH[i] for i, d in enumerate(decisions) if not is_recent_holdout(d.package_id)]
    assert learnt == sorted(trainable) and len(trainable) >= 3


def test_a_labeling_server_that_does_not_answer_fails_the_export_naming_it(
    db: psycopg.Connection, database_url: str, resources: dict[str, Any], write_truth: Any
) -> None:
    decisions = _unsure_decisions(database_url)
    write_truth({d.package_id: "ok" for d in decisions})
    dead = "http://:0123456789abcdef0123456789abcdef01234567@127.0.0.1:9"
    resources = {**resources, "labeling": _with_server(resources["labeling"], dead)}
    result = dg.materialize(
        [hard_example_export], resources=resources, partition_key=MONDAY.isoformat(), raise_on_error=False
    )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    message = str(failure.step_failure_data.error)
    assert "GET http://127.0.0.1:9/api/projects/" in message and "0123456789abcdef" not in message
