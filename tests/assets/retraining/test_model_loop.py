"""The model-quality loop on simulated cameras and the shipped default model.

Decisions come from running ``models/default`` (INT8 ONNX, as at the edge) on the conveyor
simulator, one camera per facility; FAC-002's camera has the ``six_weeks_later`` drift knobs on.
The simulator's truth verifies the samples. Needs ``models/default`` (the model engineer's shipped
weights; its ONNX files are built here when absent); skipped with that reason where it is missing.
"""

import shutil
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import psycopg
import pytest
import torch

from assets.model_quality.drift import drift_evaluation
from assets.model_quality.verified_samples import verified_samples
from assets.retraining.assets import candidate_evaluation, candidate_model, retraining_dataset
from assets.retraining.production import production_model
from bench.fixtures.events import EventFactory
from contract.proto import warehouse_vision_pb2 as pb
from orchestration.sensors import drift_retraining_sensor
from realtime.storage.model_registry import ModelRegistry
from realtime.storage.writer import EventWriter, prepare

DEFAULT_MODEL = Path(__file__).resolve().parents[3] / "models" / "default"
DAY = date(2025, 3, 10)
START = datetime(2025, 3, 10, 6, tzinfo=UTC).timestamp()
CAMERAS = {
    "FAC-001": ("cam-a", f"synthetic://seed=11&fps=10&start_time={START:.0f}"),
    "FAC-002": ("cam-b", f"synthetic://seed=12&fps=10&drift=six_weeks_later&start_time={START:.0f}"),
}
FRAMES, FRAME_STEP = 36, 12

pytestmark = pytest.mark.skipif(
    not (DEFAULT_MODEL / "weights.pt").exists(), reason="needs the shipped model models/default"
)


@cache
def simulated_decisions(facility: str, model_dir: Path) -> list[pb.DetectionEvent]:
    """One decision per package the default model found on the facility's simulated camera."""
    from assets.common.modeling import version_engine
    from assets.model_quality.crops import parse_synthetic_uri
    from contract.frames import Box
    from edge.model.version import read_version
    from model_lifecycle.evaluate import detect

    camera_id, uri = CAMERAS[facility]
    camera = parse_synthetic_uri(camera_id, uri)
    assert camera is not None
    version = read_version(model_dir)
    engine, _ = version_engine(model_dir)
    frames = [camera.render(i * FRAME_STEP) for i in range(1, FRAMES + 1)]
    factory = EventFactory(facility, seed=sorted(CAMERAS).index(facility), model_version="default")
    decisions: dict[str, pb.DetectionEvent] = {}
    for frame, found in zip(frames, detect(engine, frames), strict=True):
        for det in found:
            if det.score < version.score_threshold:
                continue
            truth = max(frame.truth, key=lambda t: t.box.iou(det.box), default=None)
            if truth is None or truth.box.iou(det.box) < 0.5 or truth.package_id in decisions:
                continue
            event = factory.decision(
                condition=det.condition,
                condition_confidence=round(float(np.max(det.condition_probs)), 4),
                event_time=datetime.fromtimestamp(frame.timestamp, UTC),
                embedding=[float(x) for x in det.embedding],
            )
            event.camera_id, event.package_id, event.track_id = camera_id, truth.package_id, truth.package_id
            box = Box(det.box.x1, det.box.y1, det.box.x2, det.box.y2)
            event.bbox.CopyFrom(pb.BoundingBox(x1=box.x1, y1=box.y1, x2=box.x2, y2=box.y2))
            decisions[truth.package_id] = event
    return list(decisions.values())


@pytest.fixture
def cameras_streamed(db: psycopg.Connection, database_url: str, shipped_model: Path) -> None:
    """Both cameras registered with their simulator URIs and a morning of decisions written."""
    with psycopg.connect(database_url) as conn:
        prepare(conn)
        for facility, (camera_id, uri) in CAMERAS.items():
            conn.execute(
                "INSERT INTO cameras (facility_id, camera_id, source_uri) VALUES (%s, %s, %s)",
                (facility, camera_id, uri),
            )
            EventWriter().write(conn, simulated_decisions(facility, shipped_model))
        conn.commit()


@pytest.fixture
def loop_resources(
    resources: dict[str, Any], database_url: str, tmp_path: Path, shipped_model: Path
) -> dict[str, Any]:
    registry = ModelRegistry(database_url, tmp_path / "models")
    registry.models_dir.mkdir(parents=True, exist_ok=True)
    registry.register("default", shipped_model, "tiny")
    registry.approve("default", by="model-engineer")
    return resources


def _nightly(
    resources: dict[str, Any], instance: dg.DagsterInstance, facility: str
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [verified_samples, drift_evaluation],
        partition_key=dg.MultiPartitionKey({"date": DAY.isoformat(), "facility": facility}),
        resources=resources,
        run_config={"ops": {"verified_samples": {"config": {"sample_rate": 0.6}}}},
        instance=instance,
    )


def _accuracy(result: dg.ExecuteInProcessResult) -> float:
    return float(result.asset_materializations_for_node("drift_evaluation")[0].metadata["accuracy"].value)  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_simulated_drift_is_caught_and_launches_retraining(
    cameras_streamed: None, loop_resources: dict[str, Any], db: psycopg.Connection
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    steady = _nightly(loop_resources, instance, "FAC-001")
    drifted = _nightly(loop_resources, instance, "FAC-002")

    assert steady.success and drifted.success
    assert _accuracy(steady) >= 0.94
    assert _accuracy(drifted) < 0.94
    rows: dict[str, float] = dict(
        db.execute("SELECT facility_id, drift_p_value FROM drift_evaluations").fetchall()
    )
    assert rows["FAC-002"] < 0.01, "embedding drift against the training reference is flagged"
    assert rows["FAC-002"] < rows["FAC-001"]
    (check,) = [
        c for c in drifted.get_asset_check_evaluations() if c.check_name == "accuracy_above_threshold"
    ]
    assert not check.passed
    verified = db.execute(
        "SELECT count(*), count(*) FILTER (WHERE label_source = 'ground-truth'), count(crop_path) "
        "FROM verified_samples WHERE facility_id = 'FAC-002'"
    ).fetchone()
    assert verified is not None and verified[0] == verified[1] == verified[2] > 20

    tick = drift_retraining_sensor(
        dg.build_sensor_context(instance=instance, resources={"settings": loop_resources["settings"]})
    )
    assert isinstance(tick, dg.SensorResult)
    (request,) = tick.run_requests or []
    assert request.tags["wv/facilities"] == "FAC-002"


def _evaluate(
    resources: dict[str, Any], instance: dg.DagsterInstance, version: str
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [candidate_evaluation],
        resources=resources,
        run_config={
            "ops": {
                "candidate_evaluation": {
                    "config": {"version": version, "test_frames": 24, "parity_frames": 8}
                }
            }
        },
        instance=instance,
        raise_on_error=False,
    )


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_blocking_check_stops_a_worse_candidate_and_passes_a_better_one(
    cameras_streamed: None,
    loop_resources: dict[str, Any],
    damaged_model: Path,
    shipped_model: Path,
    database_url: str,
    tmp_path: Path,
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    assert _nightly(loop_resources, instance, "FAC-002").success
    dataset = dg.materialize([retraining_dataset], resources=loop_resources, instance=instance)
    manifest = dataset.asset_materializations_for_node("retraining_dataset")[0].metadata["manifest"].value
    assert (
        dataset.asset_materializations_for_node("retraining_dataset")[0]
        .metadata["recent_holdout_frames"]
        .value
    )
    registry = ModelRegistry(database_url, tmp_path / "models")

    registry.register(
        "worse", damaged_model, "tiny", {"training": {"manifest": manifest}}, parent_version="default"
    )
    blocked = _evaluate(loop_resources, instance, "worse")
    (gate,) = blocked.get_asset_check_evaluations()
    assert not gate.passed and gate.severity == dg.AssetCheckSeverity.ERROR
    assert registry.get("worse").status == "rejected"
    promote = dg.materialize(
        [production_model],
        resources=loop_resources,
        run_config={"ops": {"production_model": {"config": {"version": "worse", "approved_by": "ana"}}}},
        instance=instance,
        raise_on_error=False,
    )
    assert not promote.success and registry.production().version == "default"  # type: ignore[union-attr]

    # The other way round: with the damaged model in production, the default model is the better candidate.
    shutil.copytree(damaged_model, registry.models_dir / "bad-prod")
    registry.register("bad-prod", "bad-prod", "tiny")
    registry.update_metrics("bad-prod", {"evaluation": {"passed": True}})
    registry.approve("bad-prod", by="test")
    registry.register("better", shipped_model.resolve(), "tiny", {"training": {"manifest": manifest}})
    passed = _evaluate(loop_resources, instance, "better")
    (gate,) = passed.get_asset_check_evaluations()
    assert gate.passed, gate.metadata["reasons"]
    approved = dg.materialize(
        [production_model],
        resources=loop_resources,
        run_config={"ops": {"production_model": {"config": {"approved_by": "bo"}}}},
        instance=instance,
    )
    assert approved.success
    assert (registry.production().version, registry.production().approved_by) == ("better", "bo")  # type: ignore[union-attr]
    assert registry.read_pointer().previous == "bad-prod"  # type: ignore[union-attr]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_retraining_fine_tunes_exports_and_registers_a_candidate(
    cameras_streamed: None, loop_resources: dict[str, Any], database_url: str, tmp_path: Path
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    assert _nightly(loop_resources, instance, "FAC-002").success
    result = dg.materialize(
        [retraining_dataset, candidate_model],
        resources=loop_resources,
        run_config={
            "ops": {
                "retraining_dataset": {"config": {"replay_frames": 2}},
                "candidate_model": {
                    "config": {
                        "device": "cpu",
                        "steps": 2,
                        "batch_size": 2,
                        "calibration_frames": 2,
                        "reference_frames": 4,
                    }
                },
            }
        },
        instance=instance,
    )
    assert result.success
    version = str(result.asset_materializations_for_node("candidate_model")[0].metadata["version"].value)
    model = ModelRegistry(database_url, tmp_path / "models").get(version)
    assert (model.status, model.parent_version) == ("candidate", "default")
    directory = Path(model.path)
    for name in ("weights.pt", "config.json", "model.onnx", "model.int8.onnx", "reference_embeddings.npy"):
        assert (directory / name).exists(), name
    assert model.metrics["training"]["steps"] == 2
    assert list((tmp_path / "wandb").rglob("*.wandb")), "an offline W&B run was written"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_fine_tuned_candidate_passes_the_blocking_check_and_wv_model_approve_promotes_it(
    cameras_streamed: None,
    loop_resources: dict[str, Any],
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from realtime.storage import registry_cli

    instance = dg.DagsterInstance.ephemeral()
    assert _nightly(loop_resources, instance, "FAC-002").success
    result = dg.materialize(
        [retraining_dataset, candidate_model, candidate_evaluation],
        resources=loop_resources,
        run_config={
            "ops": {
                "retraining_dataset": {"config": {"replay_frames": 48}},
                "candidate_model": {
                    "config": {
                        "device": "cpu",
                        "steps": 60,
                        "batch_size": 16,
                        "calibration_frames": 8,
                        "reference_frames": 8,
                    }
                },
                "candidate_evaluation": {"config": {"test_frames": 24, "parity_frames": 8}},
            }
        },
        instance=instance,
        raise_on_error=False,
    )
    gate = next(
        c for c in result.get_asset_check_evaluations() if c.check_name == "candidate_beats_production"
    )
    assert gate.passed, gate.metadata["reasons"]
    version = str(result.asset_materializations_for_node("candidate_model")[0].metadata["version"].value)
    registry = ModelRegistry(database_url, tmp_path / "models")
    comparisons = {c["set"]: c for c in registry.get(version).metrics["evaluation"]["comparisons"]}
    assert comparisons["recent"]["candidate"] > comparisons["recent"]["production"]

    monkeypatch.setenv("WV_DATABASE_URL", database_url)
    monkeypatch.setenv("WV_MODEL_STORE", str(registry.models_dir))
    approved = CliRunner().invoke(registry_cli.app, ["approve", version, "--by", "ana"])
    assert approved.exit_code == 0, approved.output
    production = registry.production()
    assert production is not None and (production.version, production.approved_by) == (version, "ana")
    assert registry.read_pointer().previous == "default"  # type: ignore[union-attr]


def _collected_frames(resources: dict[str, Any], facility: str, count: int) -> None:
    """``count`` frames of the facility's camera as the edges' frame sampling leaves them, with the
    ``unlabeled_frames`` manifest ``backbone_adaptation`` reads."""
    import json

    import cv2

    from assets.model_quality.crops import parse_synthetic_uri

    camera_id, uri = CAMERAS[facility]
    camera = parse_synthetic_uri(camera_id, uri)
    assert camera is not None
    state = resources["settings"].state_dir
    root = state / "unlabeled"
    files = []
    for i in range(count):
        rel = f"{facility}/{camera_id}/{DAY.isoformat()}/{i:04d}.jpg"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / rel), camera.render(i * FRAME_STEP).image)
        files.append(rel)
    manifest = state / "datasets" / "unlabeled" / facility / f"{DAY.isoformat()}.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"root": str(root), "frames": {camera_id: files}}))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_candidate_starts_from_the_adapted_backbone_when_asked(
    cameras_streamed: None, loop_resources: dict[str, Any], database_url: str, tmp_path: Path
) -> None:
    from assets.retraining.adaptation import backbone_adaptation
    from edge.model.version import load_detector

    instance = dg.DagsterInstance.ephemeral()
    assert _nightly(loop_resources, instance, "FAC-002").success
    _collected_frames(loop_resources, "FAC-002", 4)
    adaptation = dg.materialize(
        [backbone_adaptation],
        resources=loop_resources,
        run_config={
            "ops": {
                "backbone_adaptation": {
                    "config": {
                        "device": "cpu",
                        "cpu_steps": 3,
                        "cpu_batch_size": 2,
                        "replay_frames": 2,
                        "test_frames": 4,
                        "frozen_tolerance": 1.0,
                    }
                }
            }
        },
        instance=instance,
    )
    (check,) = adaptation.get_asset_check_evaluations()
    assert check.passed
    adapted_dir = Path(
        str(adaptation.asset_materializations_for_node("backbone_adaptation")[0].metadata["path"].value)
    )
    result = dg.materialize(
        [retraining_dataset, candidate_model],
        resources=loop_resources,
        run_config={
            "ops": {
                "retraining_dataset": {"config": {"replay_frames": 2}},
                "candidate_model": {
                    "config": {
                        "adapted_backbone": True,
                        "device": "cpu",
                        "steps": 2,
                        "batch_size": 2,
                        "calibration_frames": 2,
                        "reference_frames": 4,
                    }
                },
            }
        },
        instance=instance,
    )
    version = str(result.asset_materializations_for_node("candidate_model")[0].metadata["version"].value)
    model = ModelRegistry(database_url, tmp_path / "models").get(version)
    assert (model.status, model.parent_version) == ("candidate", "default")
    assert model.metrics["training"]["adapted_backbone"] == str(adapted_dir)
    # The CPU recipe leaves the first blocks as they were: the adapted ones, not production's.
    first = "backbone.blocks.0.attn.qkv.weight"
    candidate, adapted = load_detector(Path(model.path)).state_dict(), load_detector(adapted_dir).state_dict()
    production = load_detector(DEFAULT_MODEL).state_dict()
    assert torch.equal(candidate[first], adapted[first])
    assert not torch.equal(adapted[first], production[first])
