"""package_detections seen from Dagster: its observation and its data-quality suite."""

from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import psycopg
import pytest

from assets.model_quality.detections import detections_expectations, package_detections
from bench.fixtures.events import EventFactory
from realtime.storage.writer import EventWriter, prepare


def _run(resources: dict[str, Any], selection: dg.AssetSelection) -> dg.ExecuteInProcessResult:
    job = dg.define_asset_job("run", selection=selection)
    defs = dg.Definitions(
        assets=[package_detections], asset_checks=[detections_expectations], jobs=[job], resources=resources
    )
    return defs.get_job_def("run").execute_in_process(instance=dg.DagsterInstance.ephemeral())


def _run_check(resources: dict[str, Any]) -> dg.AssetCheckEvaluation:
    (evaluation,) = _run(
        resources, dg.AssetSelection.checks_for_assets("package_detections")
    ).get_asset_check_evaluations()
    return evaluation


@pytest.mark.timeout(120)
def test_observation_and_suite_flag_rows_from_an_unknown_facility(
    db: psycopg.Connection, write_decisions, resources: dict[str, Any], database_url: str
) -> None:
    write_decisions(60)
    observed = _run(resources, dg.AssetSelection.assets("package_detections"))
    (event,) = observed.get_asset_observation_events()
    observation = event.asset_observation_data.asset_observation
    assert observation.metadata["decisions"].value == 60 and observation.metadata["rows"].value == 120

    assert _run_check(resources).passed

    stray = EventFactory(
        "FAC-999", seed=9, start=datetime(2025, 3, 10, 9, tzinfo=UTC), step=timedelta(seconds=1)
    )
    with psycopg.connect(database_url) as conn:
        prepare(conn)
        EventWriter().write(conn, [stray.detection() for _ in range(5)])
        conn.commit()
    failed = _run_check(resources)
    assert not failed.passed
    failing: Any = failed.metadata["failing_expectations"].value
    assert [(f["expectation"], f["column"]) for f in failing] == [
        ("expect_column_values_to_be_in_set", "facility_id")
    ]
