"""verified_samples: a stratified sample per facility-day, exported for people and verified back."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest

from assets.model_quality.crops import parse_synthetic_uri
from assets.model_quality.verified_samples import verified_samples
from bench.fixtures.events import EventFactory
from contract.proto import warehouse_vision_pb2 as pb
from contract.vocabulary import CONDITIONS
from realtime.storage.writer import EventWriter, prepare
from simulator.config import SimConfig

DAY_KEY = dg.MultiPartitionKey({"date": "2025-03-10", "facility": "FAC-001"})


def _materialize(resources: dict, rate: float = 0.05) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [verified_samples],
        partition_key=DAY_KEY,
        resources=resources,
        run_config={"ops": {"verified_samples": {"config": {"sample_rate": rate}}}},
        instance=dg.DagsterInstance.ephemeral(),
    )


@pytest.mark.timeout(120)
def test_samples_every_class_exports_both_formats_and_imports_ground_truth(
    db: psycopg.Connection, write_decisions, write_truth, resources, tmp_path: Path
) -> None:
    decisions = write_decisions(200)
    write_decisions(50, facility="FAC-002", seed=1)  # another facility: never sampled here
    truth = {d.package_id: CONDITIONS[d.condition - 1] for d in decisions}
    write_truth(truth)

    result = _materialize(resources)

    assert result.success
    rows = db.execute(
        "SELECT facility_id, predicted_condition, verified_condition, label_source, verifier "
        "FROM verified_samples ORDER BY event_id"
    ).fetchall()
    predicted = {CONDITIONS[d.condition - 1] for d in decisions}
    assert {r[0] for r in rows} == {"FAC-001"}
    assert {r[1] for r in rows} == predicted  # stratified: every class that occurred is sampled
    assert len(rows) < len(decisions) * 0.2
    assert all(r[2] == r[1] for r in rows)  # the truth agrees with the model here
    assert {(r[3], r[4]) for r in rows} == {("ground-truth", "ground-truth@simulator")}
    materialization = result.asset_materializations_for_node("verified_samples")[0]
    assert materialization.metadata["sampled"].value == len(rows)
    assert materialization.metadata["verified"].value == len(rows)
    tasks_dir = tmp_path / "tasks" / "FAC-001" / "2025-03-10"
    prodigy = [
        json.loads(line) for line in (tasks_dir / "verification.prodigy.jsonl").read_text().splitlines()
    ]
    studio = json.loads((tasks_dir / "verification.label-studio.json").read_text())
    assert len(prodigy) == len(studio) == len(rows)
    assert {o["id"] for o in prodigy[0]["options"]} == set(CONDITIONS)
    assert "bbox" in prodigy[0]["meta"] and "camera_id" in studio[0]["data"]
    (check,) = result.get_asset_check_evaluations()
    assert check.passed


@pytest.mark.timeout(120)
def test_rerun_picks_the_same_sample_and_imports_a_human_prodigy_answer(
    db: psycopg.Connection, write_decisions, resources, tmp_path: Path
) -> None:
    write_decisions(120)
    resources = {**resources, "labeling": resources["labeling"].model_copy(update={"verifier": ""})}
    first = _materialize(resources)
    assert first.success
    sampled = [r[0] for r in db.execute("SELECT event_id FROM verified_samples ORDER BY event_id").fetchall()]
    assert db.execute(
        "SELECT count(*) FROM verified_samples WHERE verified_condition IS NOT NULL"
    ).fetchone() == (0,)
    answers = tmp_path / "answers" / "FAC-001"
    answers.mkdir(parents=True, exist_ok=True)
    (answers / "session-1.jsonl").write_text(
        json.dumps({"id": sampled[0], "answer": "accept", "accept": ["wet"], "_annotator_id": "ana"})
        + "\n{not json\n"
        + json.dumps({"id": sampled[1], "answer": "accept", "accept": ["soggy"]})
        + "\n"
    )

    second = _materialize(resources)

    assert second.success
    assert [
        r[0] for r in db.execute("SELECT event_id FROM verified_samples ORDER BY event_id").fetchall()
    ] == sampled
    verified = db.execute(
        "SELECT event_id, verified_condition, verifier, label_source FROM verified_samples "
        "WHERE verified_condition IS NOT NULL"
    ).fetchall()
    assert verified == [(sampled[0], "wet", "ana", "prodigy")]
    errors: Any = second.asset_materializations_for_node("verified_samples")[0].metadata["label_errors"].value
    assert len(errors) == 2 and "not JSON" in errors[0] and "soggy" in errors[1]


EXIT_START = datetime(2025, 3, 10, 9, tzinfo=UTC)
EXIT_URI = f"synthetic://seed=7&fps=10&width=320&height=180&start_time={EXIT_START.timestamp():.0f}"


@pytest.mark.timeout(120)
def test_the_simulator_answers_for_a_package_decided_as_it_leaves_the_view(
    db: psycopg.Connection, database_url: str, resources: dict[str, Any]
) -> None:
    # The edge decides a track on its last observation: often a package half out of the view, which
    # the simulator's truth of that frame no longer lists (less than MIN_VISIBLE of it shows).
    camera = parse_synthetic_uri("cam-1", EXIT_URI)
    assert camera is not None
    frames = [camera.render(i) for i in range(60)]
    step = SimConfig(width=320, height=180, fps=10).speed_px / 10  # the belt's move between frames
    leaving = [  # in view at frame i (its box: the last one moved on), absent from frame i's truth
        (i, replace(t.box, x1=t.box.x1 + step, x2=320.0), t)
        for i in range(1, len(frames))
        for t in frames[i - 1].truth
        if t.box.x2 >= 319
        and t.box.x1 + step < 320
        and t.package_id not in {now.package_id for now in frames[i].truth}
    ]
    in_view = [(20, t.box, t) for t in frames[20].truth]
    assert len(leaving) >= 3 and in_view
    factory = EventFactory("FAC-001", seed=3, cameras=("cam-1",))
    events = [
        factory.decision(
            event_time=EXIT_START + timedelta(seconds=i / 10),
            package_id=truth.package_id,
            bbox=pb.BoundingBox(x1=box.x1, y1=box.y1, x2=box.x2, y2=box.y2),
            condition="torn",  # the model's guess; the answer must be the simulator's
        )
        for i, box, truth in leaving + in_view
    ]
    with psycopg.connect(database_url) as conn:
        prepare(conn)
        EventWriter().write(conn, events)
        conn.execute(
            "INSERT INTO cameras (facility_id, camera_id, source_uri) VALUES ('FAC-001', 'cam-1', %s) "
            "ON CONFLICT (facility_id, camera_id) DO UPDATE SET source_uri = EXCLUDED.source_uri",
            (EXIT_URI,),
        )
        conn.commit()

    result = _materialize(resources, rate=1.0)

    assert result.success
    verified: dict[str, str | None] = dict(
        db.execute("SELECT package_id, verified_condition FROM verified_samples").fetchall()
    )
    assert verified == {truth.package_id: truth.condition for _, _, truth in leaving + in_view}
