"""Scratch resources for benchmarks on the configured services: a migrated database, a Redis
database index, Kafka topics. Each is created for the run and removed afterwards."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable, Iterator, Mapping
from urllib.parse import urlsplit

import psycopg
from kafka import KafkaAdminClient
from psycopg import sql

from foundation.redis_connect import connect, with_db
from realtime import kafka
from realtime.storage.bootstrap import bootstrap
from wv.settings import PlatformSettings

_REDIS_CLAIM = "wv:test-session:redis-db:{}"  # the same claims as the test fixtures: no collisions


def _with_database(url: str, name: str) -> str:
    return urlsplit(url)._replace(path=f"/{name}").geturl()


@contextlib.contextmanager
def scratch_database(
    settings: PlatformSettings, prefix: str, *, cameras: Mapping[str, Iterable[str]] | None = None
) -> Iterator[str]:
    """A fresh migrated, partitioned database seeded with the configured facilities and
    ``cameras`` (``{facility_id: [camera_id, ...]}``: those events may come from); dropped on exit."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    url = _with_database(settings.database_url, name)
    bootstrap(url, facilities=settings.facilities, retention_days=settings.retention_days, cameras=cameras)
    try:
        yield url
    finally:
        with psycopg.connect(_with_database(settings.database_url, "postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextlib.contextmanager
def scratch_redis(settings: PlatformSettings) -> Iterator[str]:
    """A Redis database index nobody else uses during the run; flushed on exit."""
    home = connect(settings.redis_url)
    token = uuid.uuid4().hex
    configured = home.connection_pool.connection_kwargs.get("db", 0)
    index = next(
        i
        for i in range(15, 0, -1)
        if i != configured and home.set(_REDIS_CLAIM.format(i), token, nx=True, ex=3600)
    )
    url = with_db(settings.redis_url, index)
    try:
        yield url
    finally:
        with connect(url) as client:
            client.flushdb()
        if home.get(_REDIS_CLAIM.format(index)) == token.encode():
            home.delete(_REDIS_CLAIM.format(index))
        home.close()


@contextlib.contextmanager
def scratch_topics(settings: PlatformSettings, names: list[str], partitions: int) -> Iterator[dict[str, str]]:
    """Topics ``bench.<hex>.<name>``; deleted on exit (the local broker keeps data in memory)."""
    prefix = f"bench.{uuid.uuid4().hex[:8]}."
    topics = {name: prefix + name for name in names}
    kafka.ensure_topics(settings.kafka_bootstrap, topics.values(), partitions=partitions)
    try:
        yield topics
    finally:
        admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap.split(","))
        with contextlib.suppress(Exception):  # brokers may refuse deletes; the data is scratch anyway
            admin.delete_topics(list(topics.values()))
        admin.close()
