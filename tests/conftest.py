"""Fixtures on the real services named by the settings (``wv services up`` starts them).

- ``settings``: the validated settings, as every ``wv`` command would load them.
- ``database_url``: a fresh database ``wv_test_<hex>`` on the configured server, migrated,
  partitioned and seeded with the configured facilities and, for each, the cameras
  ``EventFactory`` streams from by default (``DEFAULT_CAMERAS``); dropped after the session.
  Events of other cameras are dead-lettered (``unknown_camera``) unless a test registers them.
- ``empty_database_url``: a database name that does not exist yet (for set-up tests); dropped after.
- ``db``: an autocommit psycopg connection to it; every application table is emptied first
  (``schema_migrations`` kept) and the configured facilities and their cameras are seeded again.
- ``redis_url`` / ``redis_client``: a Redis database index claimed by this session alone
  (other sessions on the same server use other indexes), flushed before each test.
- ``kafka_bootstrap``: the broker; fails with a hint to run ``wv services up`` when none answers.
- ``topic_prefix``: a topic prefix unique to the test, so tests never see each other's messages.
- ``grpc_server``: the central gRPC service on a free local port, on the fixtures above; it
  accepts the token of ``grpc_token`` (a test module may override that fixture).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import psycopg
import pytest
import redis
from psycopg import sql

from bench.fixtures.events import DEFAULT_CAMERAS
from bench.fixtures.shards import ASSIGNMENT, FACILITIES, shard_databases
from foundation.redaction import display_url
from foundation.redis_connect import RedisMisconfigured, connect, require_sentinels, with_db
from foundation.settings import ConfigError
from orchestration.settings import OrchestrationSettings
from realtime.storage.bootstrap import bootstrap
from realtime.storage.facilities import ensure_cameras, ensure_facilities
from wv.services.kafka import KafkaService
from wv.settings import PlatformSettings

if TYPE_CHECKING:
    from realtime.service.server import RunningServer
    from realtime.storage.shards import ShardMap

ROOT = Path(__file__).resolve().parents[1]
# Tests, and the ``wv`` subprocesses they start, read the services recorded by ``wv services up``
# wherever pytest is started from; third-party tools stay offline and out of $HOME.
os.environ.setdefault("WV_STATE_DIR", str(ROOT / ".local"))
_STATE = Path(os.environ["WV_STATE_DIR"])
for _name, _value in {
    "GX_ANALYTICS_ENABLED": "false",
    "WANDB_MODE": "offline",
    "WANDB_SILENT": "true",
    "WANDB_DIR": str(_STATE / "wandb"),
    "WANDB_CACHE_DIR": str(_STATE / "wandb" / "cache"),
    "WANDB_DATA_DIR": str(_STATE / "wandb" / "data"),
    "TQDM_DISABLE": "1",
}.items():
    os.environ.setdefault(_name, _value)

_SERVICES_HINT = "start the local services with `wv services up` (or `make services`)"


@pytest.fixture(scope="session")
def settings() -> PlatformSettings:
    try:
        return PlatformSettings.load()
    except ConfigError as exc:
        pytest.exit(f"{exc}", returncode=2)


@pytest.fixture
def orchestration_settings(database_url: str, tmp_path: Path) -> OrchestrationSettings:
    """The Dagster tier's settings on the test database, its state in a temp folder (the ``settings`` resource)."""
    return OrchestrationSettings.load(database_url=database_url, state_dir=tmp_path / "state")


def seeded_cameras(settings: PlatformSettings) -> dict[str, tuple[str, ...]]:
    """The cameras every test database starts with: ``DEFAULT_CAMERAS`` of each configured facility."""
    return dict.fromkeys(settings.facilities, DEFAULT_CAMERAS)


def _with_database(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return parts._replace(path=f"/{dbname}").geturl()


@pytest.fixture(scope="session")
def database_url(settings: PlatformSettings) -> Iterator[str]:
    name = f"wv_test_{uuid.uuid4().hex[:12]}"
    url = _with_database(settings.database_url, name)
    admin_url = _with_database(settings.database_url, "postgres")
    try:
        psycopg.connect(admin_url, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {settings.database_url} does not answer ({exc}); {_SERVICES_HINT}")
    bootstrap(
        url,
        facilities=settings.facilities,
        retention_days=settings.retention_days,
        timezone=settings.facility_timezone,
        cameras=seeded_cameras(settings),
    )
    yield url
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def shard_set(settings: PlatformSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShardMap]:
    """Two facility shards for the session: new databases ``home`` and ``east`` on the configured
    server holding ``bench.fixtures.shards.FACILITIES`` as ``ASSIGNMENT`` says; dropped after."""
    cameras = dict.fromkeys(FACILITIES, DEFAULT_CAMERAS)
    with shard_databases(
        settings.database_url,
        tmp_path_factory.mktemp("shards"),
        ASSIGNMENT,
        facilities=FACILITIES,
        cameras=cameras,
        retention_days=14,  # two weeks of daily partitions, not 90: quicker to create and drop
    ) as (shards, _path):
        yield shards


@pytest.fixture
def empty_database_url(settings: PlatformSettings) -> Iterator[str]:
    """A database name on the configured server that does not exist yet; dropped after the test."""
    name = f"wv_test_{uuid.uuid4().hex[:12]}"
    yield _with_database(settings.database_url, name)
    with psycopg.connect(_with_database(settings.database_url, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _application_tables(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute(
        """
        SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
          AND c.relname <> 'schema_migrations'
        ORDER BY c.relname
        """
    ).fetchall()
    return [name for (name,) in rows]


@pytest.fixture
def db(database_url: str, settings: PlatformSettings) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        # Truncating a partitioned table touches every partition (slow); empty only what holds rows.
        tables = _application_tables(conn)
        holders = sql.SQL(" UNION ").join(
            sql.SQL("SELECT DISTINCT tableoid::regclass::text FROM {}").format(sql.Identifier(t))
            for t in tables
        )
        filled = [name for (name,) in conn.execute(holders).fetchall()]
        if filled:
            conn.execute(
                sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(
                    sql.SQL(", ").join(sql.Identifier(t) for t in filled)
                )
            )
        ensure_facilities(conn, settings.facilities, settings.facility_timezone)
        ensure_cameras(conn, seeded_cameras(settings))
        yield conn


_REDIS_CLAIM = "wv:test-session:redis-db:{}"


@pytest.fixture(scope="session")
def _redis_db_index(settings: PlatformSettings) -> Iterator[int]:
    """Claim a Redis database index no other test session uses (claims live in the configured db)."""
    try:
        require_sentinels(settings.redis_url)  # a sentinel URL naming no sentinels or an unknown service
    except RedisMisconfigured as exc:
        pytest.fail(str(exc))
    home = connect(settings.redis_url, socket_timeout=5)
    try:
        home.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {display_url(settings.redis_url)} does not answer ({exc}); {_SERVICES_HINT}")
    configured = home.connection_pool.connection_kwargs.get("db", 0)
    token = uuid.uuid4().hex
    for index in range(15, 0, -1):
        if index != configured and home.set(_REDIS_CLAIM.format(index), token, nx=True, ex=3600):
            break
    else:
        pytest.fail("every Redis database index is claimed by another test session")
    yield index
    if home.get(_REDIS_CLAIM.format(index)) == token.encode():
        home.delete(_REDIS_CLAIM.format(index))
    home.close()


@pytest.fixture
def redis_url(settings: PlatformSettings, _redis_db_index: int) -> str:
    url = with_db(settings.redis_url, _redis_db_index)
    with connect(url) as client:
        client.flushdb()
    return url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = connect(redis_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def kafka_bootstrap(settings: PlatformSettings) -> str:
    problem = KafkaService().probe(settings.kafka_bootstrap)
    if problem:
        pytest.fail(
            f"no Kafka-protocol broker answers at {settings.kafka_bootstrap} ({problem}); {_SERVICES_HINT}"
        )
    return settings.kafka_bootstrap


@pytest.fixture
def topic_prefix() -> str:
    return f"test.{uuid.uuid4().hex[:12]}."


@pytest.fixture
def grpc_token() -> str:
    return "grpc-test-token"


@pytest.fixture
def grpc_server(
    database_url: str, redis_url: str, kafka_bootstrap: str, topic_prefix: str, grpc_token: str
) -> Iterator[RunningServer]:
    from realtime.service.server import ServiceConfig, start_server  # gRPC only for the tests that use it

    running = start_server(
        ServiceConfig(
            address="127.0.0.1:0",
            token=grpc_token,
            database_url=database_url,
            max_workers=4,
            kafka_bootstrap=kafka_bootstrap,
            dead_letter_topic=f"{topic_prefix}dead-letter",
            redis_url=redis_url,
        )
    )
    yield running
    running.stop(grace_s=1)


@pytest.fixture(scope="session")
def label_studio_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private, real Label Studio (the venv ``make setup`` installs, ``.local/label-studio``) on a free
    port in a temp state folder; its URL carries the token. Stopped and purged after the session."""
    from wv.services.label_studio import LabelStudioService, venv_path  # only the labeling tests start it
    from wv.services.manager import ServiceManager

    venv = venv_path(Path(__file__).resolve().parents[1] / ".local")
    if not (venv / "bin" / "label-studio").exists():
        pytest.skip(f"Label Studio is not installed at {venv}: run `make setup`")
    manager = ServiceManager(
        tmp_path_factory.mktemp("label-studio-state"), environ={}, services=[LabelStudioService(venv)]
    )
    (state,) = manager.up()
    yield state.url
    manager.down(purge=True)
