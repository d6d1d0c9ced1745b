"""Canary rollout: `wv model approve VERSION --canary` puts a version on some facilities, and
`canary_comparison` compares it with production on the same days — rolling back a clear loss by
itself, leaving a fleet-wide promotion to a person."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest
from typer.testing import CliRunner

from assets.retraining.canary import canary_comparison
from bench.fixtures.events import EventFactory
from realtime.storage.model_registry import ModelRegistry, RegistryError
from realtime.storage.registry_cli import app
from realtime.storage.writer import EventWriter, prepare

MODEL = Path(__file__).resolve().parents[3] / "models" / "default"
DAY = datetime(2025, 3, 11, 9, tzinfo=UTC)


@pytest.fixture
def registry(db: psycopg.Connection, database_url: str, resources: dict[str, Any]) -> Iterator[ModelRegistry]:
    """v1 in production and v2, a candidate that passed its evaluation, in the test's models folder;
    the registry is emptied afterwards (a later test may expect no production model)."""
    registry = ModelRegistry(database_url, Path(resources["model_registry"].models_dir))
    for version in ("v1", "v2"):
        shutil.copytree(MODEL, registry.models_dir / version, ignore=shutil.ignore_patterns("*.onnx", "*.pt"))
    registry.register("v1", "v1", "tiny")
    registry.approve("v1", "ops", "first model")
    registry.register("v2", "v2", "tiny", metrics={"evaluation": {"passed": True}}, parent_version="v1")
    yield registry
    db.execute("TRUNCATE model_promotions, model_versions CASCADE")


def _traffic(database_url: str, version: str, facility: str, n: int, correct: int) -> None:
    """``n`` decisions of ``version`` at ``facility`` on ``DAY`` (a replayed day, before the canary
    started by the clock), each verified; ``correct`` of them right."""
    factory = EventFactory(facility, seed=hash(version) % 1000, start=DAY, model_version=version)
    decisions = [factory.decision(condition="ok", condition_confidence=0.9) for _ in range(n)]
    with psycopg.connect(database_url) as conn:
        prepare(conn)
        EventWriter().write(conn, decisions)
        for i, d in enumerate(decisions):
            at = d.event_time.ToDatetime(UTC)
            conn.execute(
                "INSERT INTO verified_samples (event_id, facility_id, sample_date, event_time, package_id, "
                "camera_id, model_version, predicted_condition, predicted_confidence, verified_condition, "
                "verifier, verified_at, label_source) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, 'ok', 0.9, %s, 'sim', now(), 'ground-truth')",
                (d.event_id, facility, at.date(), at, d.package_id, d.camera_id, version,
                 "ok" if i < correct else "torn"),
            )  # fmt: skip
        conn.commit()


def _compare(resources: dict[str, Any]) -> dict[str, Any]:
    result = dg.materialize([canary_comparison], resources=resources)
    return {
        k: v.value for k, v in result.asset_materializations_for_node("canary_comparison")[0].metadata.items()
    }


def test_wv_model_approve_canary_puts_a_version_on_named_facilities_only(registry: ModelRegistry) -> None:
    env = {"WV_DATABASE_URL": registry.database_url, "WV_MODEL_STORE": str(registry.models_dir)}
    runner = CliRunner()
    refused = runner.invoke(app, ["approve", "v2", "--by", "ana", "--canary", "FAC-404"], env=env)
    assert refused.exit_code == 1 and "'FAC-404' is neither a facility nor a camera" in refused.output
    started = runner.invoke(app, ["approve", "v2", "--by", "ana", "--canary", "FAC-002"], env=env)
    assert started.exit_code == 0, started.output
    canary = registry.canary()
    assert canary is not None and (canary.version, canary.facilities) == ("v2", ("FAC-002",))
    assert registry.get("v2").status == "approved" and registry.production().version == "v1"  # type: ignore[union-attr]
    assert registry.history("v2")[-1]["reason"] == "canary on FAC-002"
    with pytest.raises(RegistryError, match="canary v2 runs on FAC-002"):
        registry.register("v3", "v1", "tiny")
        registry.approve("v3", "ana")


def test_a_clear_loss_rolls_the_canary_back_without_anyone(
    registry: ModelRegistry, database_url: str, resources: dict[str, Any]
) -> None:
    registry.start_canary("v2", "ana", ["FAC-002"])
    _traffic(database_url, "v1", "FAC-001", 40, correct=38)
    _traffic(database_url, "v2", "FAC-002", 40, correct=28)

    meta = _compare(resources)
    assert (
        meta["verdict"] == "rollback" and "verified accuracy 70.0% vs production 95.0%" in meta["reasons"][0]
    )
    assert meta["chart"].startswith("![canary vs production](data:image/png;base64,")
    assert registry.canary() is None and registry.get("v2").status == "rolled_back"
    last = registry.history("v2")[-1]
    assert (last["action"], last["actor"]) == ("rollback", "canary_comparison")
    assert registry.get("v2").metrics["canary_decision"]["figures"]["canary"]["decisions"] == 40


def test_no_clear_loss_is_recorded_and_a_person_takes_the_canary_fleet_wide(
    registry: ModelRegistry, database_url: str, resources: dict[str, Any]
) -> None:
    registry.start_canary("v2", "ana", ["FAC-002"])
    _traffic(database_url, "v1", "FAC-001", 40, correct=37)
    _traffic(database_url, "v2", "FAC-002", 40, correct=39)

    meta = _compare(resources)
    assert meta["verdict"] == "promote_recommended" and "wv model approve v2 --by NAME" in meta["next_step"]
    assert registry.canary() is not None
    assert registry.get("v2").metrics["canary_decision"]["verdict"] == "promote_recommended"

    registry.approve("v2", "ana", "canary held up")
    assert registry.production().version == "v2" and registry.canary() is None  # type: ignore[union-attr]
    assert _compare(resources)["canary"] == "none running"
