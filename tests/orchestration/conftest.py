"""A real, PostgreSQL-backed Dagster instance for orchestration tests (its own database, dropped after)."""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from psycopg import sql

from orchestration.instance import apply_env, prepare_instance
from wv.settings import PlatformSettings


@pytest.fixture(scope="session")
def instance_settings(database_url: str) -> PlatformSettings:
    """PlatformSettings pointing at the test database; Dagster storage goes to ``<test db>_dagster``."""
    return PlatformSettings.load(database_url=database_url)


@pytest.fixture(scope="session")
def dagster_instance(
    instance_settings: PlatformSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dg.DagsterInstance]:
    home = Path(tmp_path_factory.mktemp("dagster_home"))
    apply_env(prepare_instance(instance_settings, home))
    instance = dg.DagsterInstance.from_config(str(home))
    yield instance
    instance.dispose()
    storage = instance_settings.dagster_url
    admin = psycopg.conninfo.make_conninfo(storage, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        name = psycopg.conninfo.conninfo_to_dict(storage)["dbname"]
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(str(name))))
