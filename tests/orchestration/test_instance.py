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
    database = instance_settings.database_url.rsplit("/", 1)[1].partition("?")[0]
    assert f"@/{database}_dagster?" in env["DAGSTER_PG_URL"]
    assert type(dagster_instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    assert dagster_instance.freshness_enabled


def test_credentials_travel_in_the_environment_only() -> None:
    env = storage_env("postgresql://wv:s%40cret@db.example:6543/app_dagster")
    assert env == {"DAGSTER_PG_URL": "postgresql+psycopg2://wv:s%40cret@/app_dagster?host=db.example%3A6543"}


def test_storage_on_a_patroni_cluster_lists_every_member_and_asks_for_the_leader() -> None:
    env = storage_env("postgresql://wv@db-1:5432,db-2:5433/app_dagster?target_session_attrs=read-write")
    assert env == {
        "DAGSTER_PG_URL": "postgresql+psycopg2://wv@/app_dagster"
        "?host=db-1%3A5432&host=db-2%3A5433&target_session_attrs=read-write"
    }
