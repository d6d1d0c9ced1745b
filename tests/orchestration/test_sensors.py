"""The drift sensor launches retraining once per accuracy drop; failures are recorded for on-call."""

import json
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from assets.common.resources import DatabaseResource
from orchestration.sensors import drift_retraining_sensor, oncall_failure_sensor
from orchestration.settings import OrchestrationSettings


def _evaluated(instance: dg.DagsterInstance, facility: str, day: str, accuracy: float | None) -> None:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key="drift_evaluation",
            partition=dg.MultiPartitionKey({"date": day, "facility": facility}),
            metadata={"accuracy": dg.MetadataValue.float(accuracy) if accuracy is not None else None},
        )
    )


def _tick(instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"settings": OrchestrationSettings.load()}
    )
    result = drift_retraining_sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


@pytest.mark.timeout(120)
def test_fires_on_093_not_on_095_and_once_per_drop(dagster_instance: dg.DagsterInstance) -> None:
    _evaluated(dagster_instance, "FAC-001", "2025-03-10", 0.95)
    _evaluated(dagster_instance, "FAC-002", "2025-03-10", None)  # nothing verified: no signal
    quiet = _tick(dagster_instance, None)
    assert not quiet.run_requests

    _evaluated(dagster_instance, "FAC-001", "2025-03-11", 0.93)
    fired = _tick(dagster_instance, quiet.cursor)
    (request,) = fired.run_requests or []
    assert request.tags["wv/facilities"] == "FAC-001"
    assert request.tags["wv/lowest_accuracy"] == "0.9300"
    assert request.run_key == "drift-FAC-001@2025-03-11"
    assert drift_retraining_sensor.job_name == "retraining"

    _evaluated(dagster_instance, "FAC-001", "2025-03-12", 0.91)  # still down: same drop
    assert not _tick(dagster_instance, fired.cursor).run_requests
    again = _tick(dagster_instance, fired.cursor)
    _evaluated(dagster_instance, "FAC-001", "2025-03-13", 0.96)  # recovered
    recovered = _tick(dagster_instance, again.cursor)
    assert not recovered.run_requests and json.loads(recovered.cursor or "{}")["below"] == {}
    _evaluated(dagster_instance, "FAC-001", "2025-03-14", 0.90)  # a new drop fires again
    assert len(_tick(dagster_instance, recovered.cursor).run_requests or []) == 1


@pytest.mark.timeout(120)
def test_failed_runs_are_recorded_for_oncall(
    dagster_instance: dg.DagsterInstance,
    db: psycopg.Connection,
    database_url: str,
    orchestration_settings: OrchestrationSettings,
) -> None:
    @dg.asset
    def broken() -> None:
        raise RuntimeError("disk full")

    result = dg.materialize([broken], instance=dagster_instance, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
    context = dg.build_run_status_sensor_context(
        sensor_name=oncall_failure_sensor.name,
        dagster_event=failure,
        dagster_instance=dagster_instance,
        dagster_run=result.dagster_run,
        resources={"database": DatabaseResource(url=database_url), "settings": orchestration_settings},
    ).for_run_failure()
    oncall_failure_sensor(context)
    row = db.execute("SELECT job_name, failed_steps, run_url FROM orchestration_failures").fetchone()
    assert row is not None and row[1] == ["broken"] and result.dagster_run.run_id in row[2]


@pytest.mark.timeout(120)
def test_command_line_approvals_appear_as_production_model_materializations(
    dagster_instance: dg.DagsterInstance, db: psycopg.Connection, database_url: str, tmp_path: Path
) -> None:
    from assets.common.resources import ModelRegistryResource
    from assets.retraining.production import production_model
    from orchestration.sensors import model_promotion_sensor
    from realtime.storage.model_registry import ModelRegistry

    resource = ModelRegistryResource(database_url=database_url, models_dir=str(tmp_path))
    registry = ModelRegistry(database_url, tmp_path)
    for version in ("m1", "m2"):
        (tmp_path / version).mkdir()
        registry.register(version, version, "tiny", {"evaluation": {"passed": True}})
    # m1 approved through Dagster: already a materialization, the sensor must not repeat it.
    dg.materialize(
        [production_model],
        resources={"model_registry": resource},
        run_config={"ops": {"production_model": {"config": {"version": "m1", "approved_by": "ana"}}}},
        instance=dagster_instance,
    )
    registry.approve("m2", by="bo")  # wv model approve

    tick = model_promotion_sensor(
        dg.build_sensor_context(instance=dagster_instance, resources={"model_registry": resource})
    )
    assert isinstance(tick, dg.SensorResult)
    (event,) = tick.asset_events
    assert event.metadata["version"].value == "m2" and event.metadata["by"].value == "bo"
    assert event.metadata["previous"].value == "m1"
    quiet = model_promotion_sensor(
        dg.build_sensor_context(
            instance=dagster_instance, cursor=tick.cursor, resources={"model_registry": resource}
        )
    )
    assert isinstance(quiet, dg.SensorResult) and not quiet.asset_events
