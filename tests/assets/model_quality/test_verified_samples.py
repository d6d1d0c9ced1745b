"""verified_samples: a stratified sample per facility-day, exported for people and verified back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest

from assets.model_quality.verified_samples import verified_samples
from contract.vocabulary import CONDITIONS

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
