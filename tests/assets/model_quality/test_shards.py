"""Model quality over two facility shards: decisions are read from their facility's shard (a
network-wide read from every shard); the samples land at home, as over one database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg
import pytest

from assets.common.resources import DatabaseResource
from assets.model_quality.detections import package_detections
from assets.model_quality.labeling import load_decisions
from assets.model_quality.verified_samples import verified_samples
from bench.fixtures.events import DEFAULT_CAMERAS
from bench.fixtures.shards import FACILITIES, reset, write_shard_map
from contract.vocabulary import CONDITIONS

pytestmark = pytest.mark.timeout(120)
DAY = datetime(2025, 3, 10, tzinfo=UTC)
SAMPLES = "SELECT event_id, facility_id, predicted_condition, verified_condition FROM verified_samples"


def _copy_events(source: psycopg.Connection, target_url: str, facility: str) -> None:
    """The facility's events of the one database, written again on its shard."""
    with psycopg.connect(target_url, autocommit=True) as target:
        for table in ("package_detections", "quality_assessments"):
            select = f"COPY (SELECT * FROM {table} WHERE facility_id = '{facility}') TO STDOUT"
            with (
                source.cursor().copy(select) as out,
                target.cursor().copy(f"COPY {table} FROM STDIN") as into,
            ):
                for chunk in out:
                    into.write(chunk)


def _observed(database: DatabaseResource) -> dict:
    job = dg.define_asset_job("observe", selection=dg.AssetSelection.assets("package_detections"))
    defs = dg.Definitions(assets=[package_detections], jobs=[job], resources={"database": database})
    result = defs.get_job_def("observe").execute_in_process(instance=dg.DagsterInstance.ephemeral())
    (event,) = result.get_asset_observation_events()
    return {k: v.value for k, v in event.asset_observation_data.asset_observation.metadata.items()}


def test_decisions_come_from_their_facilitys_shard_and_samples_match_one_database(
    db, database_url, shard_set, write_decisions, write_truth, resources, tmp_path
):
    reset(shard_set, FACILITIES, dict.fromkeys(FACILITIES, DEFAULT_CAMERAS))
    east = write_decisions(120, facility="FAC-003", seed=3)
    write_decisions(40, facility="FAC-001", seed=4)
    write_truth({d.package_id: CONDITIONS[d.condition - 1] for d in east})
    shards = write_shard_map(tmp_path / "shards.yaml", shard_set)
    for facility in ("FAC-001", "FAC-003"):
        _copy_events(db, shards.url_of(facility), facility)
    one = DatabaseResource(url=database_url)
    sharded = DatabaseResource(url=shards.home_url, shard_map=str(tmp_path / "shards.yaml"))

    span = (DAY - timedelta(days=1), DAY + timedelta(days=2))
    assert load_decisions(sharded, *span) == load_decisions(one, *span)  # every shard, in time order
    assert {d.facility_id for d in load_decisions(sharded, *span, facility="FAC-003")} == {"FAC-003"}

    assert _observed(sharded) == _observed(one)  # the table seen across shards

    key = dg.MultiPartitionKey({"date": DAY.date().isoformat(), "facility": "FAC-003"})
    for database in (one, sharded):
        run = dg.materialize(
            [verified_samples],
            partition_key=key,
            resources={**resources, "database": database},
            run_config={"ops": {"verified_samples": {"config": {"sample_rate": 0.1}}}},
            instance=dg.DagsterInstance.ephemeral(),
        )
        assert run.success
    with psycopg.connect(shards.home_url) as home:
        at_home = sorted(home.execute(SAMPLES).fetchall())
    assert at_home and at_home == sorted(db.execute(SAMPLES).fetchall())
    assert {r[1] for r in at_home} == {"FAC-003"} and all(r[3] is not None for r in at_home)
