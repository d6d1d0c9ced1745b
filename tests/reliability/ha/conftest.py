"""A private Patroni cluster (etcd + leader + synchronous standby) under the pipeline of each test.

It replaces the session's ``database_url`` for the tests in this folder: every process of the
pipeline gets the cluster's multi-host URL, exactly as ``wv services up`` with
``WV_SERVICES_HA=postgres`` writes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.fixtures.events import DEFAULT_CAMERAS
from bench.reliability.patroni import PatroniCluster
from realtime.storage.bootstrap import bootstrap
from wv.services.base import ServiceError
from wv.settings import PlatformSettings


@pytest.fixture(scope="package")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PatroniCluster]:
    home: Path = tmp_path_factory.mktemp("patroni")
    ha = PatroniCluster(home)
    try:
        ha.start()
    except ServiceError as exc:
        ha.stop()
        pytest.fail(f"the Patroni cluster did not start: {exc}")
    yield ha
    ha.stop()


@pytest.fixture(scope="package")
def database_url(cluster: PatroniCluster, settings: PlatformSettings) -> str:
    """The cluster's multi-host URL, migrated and seeded like every test database."""
    bootstrap(
        cluster.url,
        facilities=settings.facilities,
        retention_days=settings.retention_days,
        timezone=settings.facility_timezone,
        cameras=dict.fromkeys(settings.facilities, DEFAULT_CAMERAS),
    )
    return cluster.url
