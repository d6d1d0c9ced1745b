"""Canary rollout: `wv model approve VERSION --canary` puts a version on some facilities or cameras,
and `canary_comparison` compares it with production there just before it started (or, with no
such baseline, fleet-wide on the same days) — rolling back a clear loss by itself, leaving a
fleet-wide promotion to a person."""

from __future__ import annotations

import shutil
import zlib
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest
from typer.testing import CliRunner

from assets.retraining.canary import canary_comparison
from bench.fixtures.events import DEFAULT_CAMERAS, EventFactory
from contract.events import anomaly_flag
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


def _traffic(
    database_url: str,
    version: str,
    facility: str,
    n: int,
    correct: int,
    at: datetime = DAY,
    cameras: Sequence[str] = DEFAULT_CAMERAS,
    flagged: int = 0,
) -> None:
    """``n`` decisions of ``version`` at ``facility``'s ``cameras`` from ``at`` (a replayed time, before
    the canary started by the clock), each verified; ``correct`` of them right, the first ``flagged``
    with an anomaly flag (a misplaced package)."""
    seed = zlib.crc32(f"{version}|{facility}|{at.isoformat()}|{','.join(cameras)}".encode())
    factory = EventFactory(facility, seed=seed, start=at, cameras=cameras, model_version=version)
    decisions = [factory.decision(condition="ok", condition_confidence=0.9) for _ in range(n)]
    for d in decisions[:flagged]:
        d.anomalies.append(
            anomaly_flag(
                kind="misplaced",
                facility_id=facility,
                flagged_at=d.event_time.ToDatetime(UTC),
                event_id=d.event_id,
                package_id=d.package_id,
            )
        )
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
    assert meta["baseline_rule"] == "fleet_same_days"  # production never ran on FAC-002: nothing nearer
    assert "production never decided on FAC-002 before the canary" in meta["reasons"][-1]
    assert registry.canary() is not None
    assert registry.get("v2").metrics["canary_decision"]["verdict"] == "promote_recommended"

    registry.approve("v2", "ana", "canary held up")
    assert registry.production().version == "v2" and registry.canary() is None  # type: ignore[union-attr]
    assert _compare(resources)["canary"] == "none running"


def test_a_canary_that_lifts_a_drifted_facility_is_held_against_production_there_not_the_healthy_rest(
    registry: ModelRegistry, database_url: str, resources: dict[str, Any]
) -> None:
    """The demo's case: production reads 100 % on the healthy facility and 85 % on the drifted one
    before the canary; the canary reads 93.5 % there. Against the healthy facility that was a
    rollback; against the drifted facility's own recent days it is a promotion to recommend."""
    registry.start_canary("v2", "ana", ["FAC-002"])
    before = DAY - timedelta(days=1)
    _traffic(database_url, "v1", "FAC-002", 40, correct=40, at=DAY - timedelta(days=3))  # before the drift
    _traffic(database_url, "v1", "FAC-002", 20, correct=17, at=before)
    _traffic(database_url, "v1", "FAC-002", 20, correct=17, at=DAY - timedelta(hours=1))  # until the swap
    for at in (before, DAY):
        _traffic(database_url, "v1", "FAC-001", 40, correct=40, at=at)
    _traffic(database_url, "v2", "FAC-002", 46, correct=43)

    meta = _compare(resources)
    assert meta["verdict"] == "promote_recommended", meta["reasons"]
    assert meta["baseline"].startswith("production on FAC-002, 2025-03-10–2025-03-11 before the canary")
    assert "| production | v1 | production on FAC-002, 2025-03-10–2025-03-11" in meta["comparison"]
    decision = registry.get("v2").metrics["canary_decision"]
    assert decision["baseline"]["days"] == ["2025-03-10", "2025-03-11"]  # the healthy day 3 back is left out
    assert decision["figures"]["production"]["verified accuracy"] == 0.85
    assert decision["figures"]["production"]["decisions"] == 40
    assert registry.canary() is not None


def test_a_canary_clearly_below_production_on_its_own_facility_is_rolled_back_even_when_the_fleet_reads_worse(
    registry: ModelRegistry, database_url: str, resources: dict[str, Any]
) -> None:
    registry.start_canary("v2", "ana", ["FAC-002"])
    _traffic(database_url, "v1", "FAC-002", 40, correct=38, at=DAY - timedelta(days=1))
    _traffic(database_url, "v1", "FAC-001", 40, correct=32)  # the rest of the fleet has a drift of its own
    _traffic(database_url, "v2", "FAC-002", 40, correct=28)

    meta = _compare(resources)
    assert meta["verdict"] == "rollback" and meta["baseline_rule"] == "targets_before_canary"
    assert "verified accuracy 70.0% vs production 95.0%" in meta["reasons"][0]
    assert registry.canary() is None and registry.get("v2").status == "rolled_back"
    assert (
        "against production on FAC-002, 2025-03-10 before the canary" in registry.history("v2")[-1]["reason"]
    )


def test_a_canary_on_a_facility_that_misplaces_many_packages_is_held_to_that_facilitys_anomaly_rate(
    registry: ModelRegistry, database_url: str, resources: dict[str, Any]
) -> None:
    """FAC-002's traffic raises a flag on one package in five whichever model decides; the rest of the
    fleet raises none. The canary's 20 % is FAC-002's usual rate, no loss."""
    registry.start_canary("v2", "ana", ["FAC-002"])
    before = DAY - timedelta(days=1)
    _traffic(database_url, "v1", "FAC-002", 40, correct=38, at=before, flagged=8)
    for at in (before, DAY):
        _traffic(database_url, "v1", "FAC-001", 40, correct=40, at=at)
    _traffic(database_url, "v2", "FAC-002", 40, correct=39, flagged=8)

    meta = _compare(resources)
    assert meta["verdict"] == "promote_recommended", meta["reasons"]
    figures = registry.get("v2").metrics["canary_decision"]["figures"]
    assert (
        figures["production"]["anomalies per decision"] == figures["canary"]["anomalies per decision"] == 0.2
    )


def test_a_camera_canary_is_held_against_production_on_the_same_camera_before_it_not_the_other_cameras(
    registry: ModelRegistry, database_url: str, resources: dict[str, Any]
) -> None:
    """cam-02 of FAC-002 drifted (85 %) while cam-01 stayed at 100 % and keeps running production
    beside the canary: the canary's 93.5 % on cam-02 is judged against cam-02's own 85 %."""
    registry.start_canary("v2", "ana", ["FAC-002/cam-02"])
    _traffic(database_url, "v1", "FAC-002", 40, correct=34, at=DAY - timedelta(days=1), cameras=["cam-02"])
    for at in (DAY - timedelta(days=1), DAY):
        _traffic(database_url, "v1", "FAC-002", 40, correct=40, at=at, cameras=["cam-01"])
    _traffic(database_url, "v2", "FAC-002", 46, correct=43, cameras=["cam-02"])

    meta = _compare(resources)
    assert meta["verdict"] == "promote_recommended", meta["reasons"]
    assert meta["baseline"].startswith("production on FAC-002/cam-02, 2025-03-10 before the canary")
    assert registry.get("v2").metrics["canary_decision"]["figures"]["production"]["verified accuracy"] == 0.85
