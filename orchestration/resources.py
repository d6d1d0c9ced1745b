"""Dagster resources: thin, configurable handles on the platform's services.

Every field left empty falls back to the validated settings (``WV_*``) when the run starts, so
run configuration never has to carry URLs or secrets, and a test can point a resource anywhere.
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

from orchestration.erp.resource import ErpResource
from realtime.storage.model_registry import ModelRegistry
from wv.settings import get_settings

if TYPE_CHECKING:
    import redis
    from kafka import KafkaProducer


class DatabaseResource(dg.ConfigurableResource):
    """The application database (PostgreSQL or TimescaleDB) through psycopg 3."""

    url: str = Field(default="", description="PostgreSQL URL; empty: WV_DATABASE_URL.")

    @property
    def conninfo(self) -> str:
        return self.url or get_settings().database_url

    @contextmanager
    def connect(self, autocommit: bool = False) -> Iterator[psycopg.Connection[Any]]:
        """A fresh connection, committed on success and rolled back on error, always closed."""
        with psycopg.connect(self.conninfo, autocommit=autocommit, connect_timeout=10) as conn:
            yield conn


class RedisResource(dg.ConfigurableResource):
    """Redis streams, windows and caches."""

    url: str = Field(default="", description="Redis URL; empty: WV_REDIS_URL.")

    def client(self) -> redis.Redis:
        import redis

        return redis.Redis.from_url(self.url or get_settings().redis_url)


class KafkaResource(dg.ConfigurableResource):
    """The Kafka(-protocol) cluster the edge publishes to."""

    bootstrap: str = Field(default="", description="host:port list; empty: WV_KAFKA_BOOTSTRAP.")
    topic_prefix: str = Field(default="", description="Topic prefix; empty: WV_KAFKA_TOPIC_PREFIX.")

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix or get_settings().kafka_topic_prefix}{name}"

    def producer(self) -> KafkaProducer:
        from kafka import KafkaProducer

        return KafkaProducer(bootstrap_servers=(self.bootstrap or get_settings().kafka_bootstrap).split(","))


class ModelRegistryResource(dg.ConfigurableResource):
    """The ``model_versions`` table plus the immutable model directories."""

    database_url: str = Field(default="", description="PostgreSQL URL; empty: WV_DATABASE_URL.")
    models_dir: str = Field(
        default="", description="Model directories; empty: WV_MODEL_STORE or <state>/models."
    )

    def registry(self) -> ModelRegistry:
        settings = get_settings()
        return ModelRegistry(
            self.database_url or settings.database_url,
            Path(self.models_dir) if self.models_dir else settings.models_dir,
        )


class WandbResource(dg.ConfigurableResource):
    """Weights & Biases runs; offline by default so nothing leaves the machine."""

    mode: str = Field(default="", description="offline, online or disabled; empty: WV_WANDB_MODE.")
    project: str = Field(default="warehouse-vision", description="W&B project name.")
    directory: str = Field(default="", description="Run files; empty: <state>/wandb.")

    def configure_environment(self) -> Path:
        """Point every W&B folder under the project's state directory (never ``$HOME``)."""
        settings = get_settings()
        root = Path(self.directory) if self.directory else settings.state_dir / "wandb"
        for var, sub in (("WANDB_DIR", ""), ("WANDB_CACHE_DIR", "cache"), ("WANDB_DATA_DIR", "data")):
            path = (root / sub).resolve()
            path.mkdir(parents=True, exist_ok=True)
            os.environ[var] = str(path)
        os.environ["WANDB_MODE"] = self.mode or settings.wandb_mode
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


class LabelingResource(dg.ConfigurableResource):
    """Where verification tasks are written for annotators and where their answers come back."""

    export_dir: str = Field(default="", description="Task files and crops; empty: <state>/labeling/tasks.")
    import_dir: str = Field(
        default="", description="Answered files to import; empty: <state>/labeling/verified."
    )
    verifier: str = Field(
        default="",
        description="Demo only: 'ground-truth' lets the simulator's truth answer tasks; empty: people do.",
    )

    truth_dir: str = Field(
        default="", description="Demo only: simulator truth JSONL files; empty: <state>/truth."
    )

    def truth_path(self) -> Path:
        return Path(self.truth_dir) if self.truth_dir else get_settings().state_dir / "truth"

    def tasks_path(self) -> Path:
        path = Path(self.export_dir) if self.export_dir else get_settings().state_dir / "labeling" / "tasks"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def answers_path(self) -> Path:
        path = (
            Path(self.import_dir) if self.import_dir else get_settings().state_dir / "labeling" / "verified"
        )
        path.mkdir(parents=True, exist_ok=True)
        return path


def default_resources() -> dict[str, dg.ConfigurableResource]:
    """The resources every asset may ask for, configured from the settings."""
    return {
        "database": DatabaseResource(),
        "redis": RedisResource(),
        "kafka": KafkaResource(),
        "model_registry": ModelRegistryResource(),
        "wandb": WandbResource(),
        "labeling": LabelingResource(),
        "erp": ErpResource(),
    }
