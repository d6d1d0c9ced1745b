"""Verification tasks out and answers back, in Prodigy and Label Studio formats."""

import json
from pathlib import Path

from quality.labeling import (
    LabelTask,
    ground_truth_answers,
    read_label_studio,
    read_labels,
    read_prodigy,
    read_truth,
    write_label_studio_tasks,
    write_prodigy_tasks,
)

TASK = LabelTask(
    event_id="ev-1",
    facility_id="FAC-001",
    camera_id="cam-01",
    package_id="PKG-1",
    track_id="t1",
    event_time="2025-03-10T06:00:00+00:00",
    bbox=(10.0, 20.0, 90.0, 80.0),
    predicted="wet",
    confidence=0.72,
    model_version="v1",
)


def test_prodigy_tasks_answered_in_prodigy_come_back_as_labels(tmp_path: Path) -> None:
    path = write_prodigy_tasks([TASK], tmp_path / "tasks.jsonl")
    task = json.loads(path.read_text())
    assert task["accept"] == ["wet"] and task["meta"]["bbox"] == [10.0, 20.0, 90.0, 80.0]
    task.update(answer="accept", accept=["torn"], _annotator_id="verifier-7")
    rejected = {**task, "id": "ev-2", "answer": "reject"}
    (tmp_path / "answers.jsonl").write_text(json.dumps(task) + "\n" + json.dumps(rejected) + "\n")
    labels, errors = read_prodigy(tmp_path / "answers.jsonl")
    assert errors == []
    assert [(lbl.event_id, lbl.condition, lbl.verifier, lbl.source) for lbl in labels] == [
        ("ev-1", "torn", "verifier-7", "prodigy")
    ]


def test_label_studio_export_takes_the_latest_annotation_and_reports_bad_tasks(tmp_path: Path) -> None:
    path = write_label_studio_tasks([TASK], tmp_path / "tasks.json")
    (task,) = json.loads(path.read_text())
    assert (tmp_path / "labeling_config.xml").exists()
    assert task["predictions"][0]["result"][0]["value"]["choices"] == ["wet"]
    choice = task["predictions"][0]["result"]
    task["annotations"] = [
        {"completed_by": {"email": "a@x"}, "result": choice, "was_cancelled": False},
        {"completed_by": {"email": "b@x"}, "result": [{**choice[0], "value": {"choices": ["ok"]}}]},
    ]
    broken = {"data": {"event_id": "ev-9"}, "annotations": [{"result": []}]}
    (tmp_path / "export.json").write_text(json.dumps([task, broken]))
    labels, errors = read_label_studio(tmp_path / "export.json")
    assert [(lbl.event_id, lbl.condition, lbl.verifier) for lbl in labels] == [("ev-1", "ok", "b@x")]
    assert len(errors) == 1 and "exactly one" in errors[0].message


def test_ground_truth_answers_round_trip_through_the_import(tmp_path: Path) -> None:
    (tmp_path / "truth.jsonl").write_text(
        json.dumps({"index": 3, "packages": [{"package_id": "PKG-1", "condition": "crushed"}]}) + "\nnope\n"
    )
    truth, errors = read_truth([tmp_path / "truth.jsonl"])
    assert truth == {"PKG-1": "crushed"} and len(errors) == 1
    assert ground_truth_answers([TASK], truth, tmp_path / "gt.json") == 1
    labels, errors = read_labels(tmp_path / "gt.json")
    assert [(lbl.condition, lbl.source) for lbl in labels] == [("crushed", "ground-truth")] and not errors
    assert read_labels(tmp_path / "notes.txt")[1][0].message.startswith("expected a Prodigy")
