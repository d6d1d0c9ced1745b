"""Dagster resources: thin, configurable handles on the platform's services.

The code location (``orchestration.definitions``) configures them from the settings it loaded once
(``WV_*``), so run configuration never has to carry URLs or secrets; a test builds them pointing
anywhere. The settings themselves are the ``settings`` resource, for thresholds and folders.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
import psycopg
from pydantic import Field

from realtime.storage.model_registry import ModelRegistry
from realtime.storage.shards import HOME, ShardMap

if TYPE_CHECKING:
    import redis
    from kafka import KafkaProducer


class DatabaseResource(dg.ConfigurableResource):
    """The application database (PostgreSQL or TimescaleDB) through psycopg 3, and its facility
    shards: a facility's partitions run on its shard, network-wide assets read every shard."""

    url: str = Field(description="PostgreSQL URL (WV_DATABASE_URL): the home shard.")
    shard_map: str | None = Field(
        default=None, description="Facility shards file (WV_SHARD_MAP); unset: every facility in `url`."
    )

    @property
    def conninfo(self) -> str:
        return self.url

    def shards(self) -> ShardMap:
        """Which database holds each facility (read from the file on each call: runs are short)."""
        return ShardMap.load(Path(self.shard_map), self.url) if self.shard_map else ShardMap.single(self.url)

    @contextmanager
    def connect(self, autocommit: bool = False, *, shard: str = HOME) -> Iterator[psycopg.Connection[Any]]:
        """A fresh connection to ``shard`` (default: home), committed on success and rolled back on
        error, always closed."""
        url = self.url if shard == HOME else self.shards().urls[shard]
        with psycopg.connect(url, autocommit=autocommit, connect_timeout=10) as conn:
            yield conn


class RedisResource(dg.ConfigurableResource):
    """Redis streams, windows and caches."""

    url: str = Field(description="Redis URL (WV_REDIS_URL).")

    def client(self) -> redis.Redis:
        from foundation.redis_connect import connect

        return connect(self.url)


class KafkaResource(dg.ConfigurableResource):
    """The Kafka(-protocol) cluster the edge publishes to."""

    bootstrap: str = Field(description="host:port list (WV_KAFKA_BOOTSTRAP).")
    topic_prefix: str = Field(description="Topic prefix (WV_KAFKA_TOPIC_PREFIX).")

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    def producer(self) -> KafkaProducer:
        from kafka import KafkaProducer

        return KafkaProducer(bootstrap_servers=self.bootstrap.split(","))


class ModelRegistryResource(dg.ConfigurableResource):
    """The ``model_versions`` table plus the immutable model directories."""

    database_url: str = Field(description="PostgreSQL URL (WV_DATABASE_URL).")
    models_dir: str = Field(description="Model directories (WV_MODEL_STORE, default <state>/models).")

    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.database_url, Path(self.models_dir))


class WandbResource(dg.ConfigurableResource):
    """Weights & Biases runs; offline by default so nothing leaves the machine."""

    mode: str = Field(description="offline, online or disabled (WV_WANDB_MODE).")
    project: str = Field(default="warehouse-vision", description="W&B project name.")
    directory: str = Field(description="Run files, under the state folder (never $HOME).")

    def configure_environment(self) -> Path:
        """Point every W&B folder under the project's state directory (never ``$HOME``)."""
        root = Path(self.directory)
        for var, sub in (("WANDB_DIR", ""), ("WANDB_CACHE_DIR", "cache"), ("WANDB_DATA_DIR", "data")):
            path = (root / sub).resolve()
            path.mkdir(parents=True, exist_ok=True)
            os.environ[var] = str(path)
        os.environ["WANDB_MODE"] = self.mode
        os.environ.setdefault("WANDB_SILENT", "true")
        return root

    @contextmanager
    def run(self, name: str, job_type: str, config: dict[str, Any]) -> Iterator[Any]:
        """An open W&B run, finished (and synced, when online) on exit."""
        root = self.configure_environment()
        import wandb

        run = wandb.init(  # dir: W&B reads WANDB_DIR once per process, a later resource may differ
            project=self.project,
            name=name,
            job_type=job_type,
            config=config,
            dir=str(root.resolve()),
            reinit="finish_previous",
        )
        try:
            yield run
        finally:
            run.finish()
