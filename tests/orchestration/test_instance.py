"""The persistent instance keeps runs, events and schedules in PostgreSQL, in a database of its own."""

import dagster as dg
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from orchestration.instance import storage_env
from wv.settings import PlatformSettings


def test_storage_is_postgres_in_its_own_database(
    dagster_instance: dg.DagsterInstance, instance_settings: PlatformSettings
) -> None:
    assert isinstance(dagster_instance.run_storage, PostgresRunStorage)
    assert isinstance(dagster_instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(dagster_instance.schedule_storage, PostgresScheduleStorage)
    env = storage_env(instance_settings.dagster_url)
    assert env["DAGSTER_PG_DB"] == instance_settings.database_url.rsplit("/", 1)[1] + "_dagster"
    assert type(dagster_instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    assert dagster_instance.freshness_enabled


def test_credentials_travel_in_the_environment_only() -> None:
    env = storage_env("postgresql://wv:s%40cret@db.example:6543/app_dagster")
    assert env == {
        "DAGSTER_PG_HOST": "db.example",
        "DAGSTER_PG_PORT": "6543",
        "DAGSTER_PG_USER": "wv",
        "DAGSTER_PG_PASSWORD": "s@cret",
        "DAGSTER_PG_DB": "app_dagster",
    }
