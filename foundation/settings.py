"""Typed configuration: the base every tier's settings model builds on, and the sections tiers share.

Every setting is an environment variable ``WV_<FIELD>``; ``$WV_STATE_DIR/services.env`` (written by
``wv services up`` for the services it started locally) fills what the environment leaves out,
then the defaults. Each tier declares one model (``edge.settings.EdgeSettings``,
``realtime.settings.CentreSettings``, ``assets.common.settings.PipelineSettings``, …) composed of
the sections below plus its own fields, loads it once at start-up with :meth:`WVSettings.load`,
and passes it down. A bad value stops start-up with a :class:`ConfigError` naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import parse_qs, urlsplit

from dotenv import dotenv_values
from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from foundation.logging import configure_logging
from foundation.redaction import redact, secret_values
from foundation.redis_connect import SENTINEL_SCHEME, is_sentinel_url, parse_sentinel_url

ENV_PREFIX = "WV_"


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message names the variable."""


def services_env_file() -> Path:
    """`$WV_STATE_DIR/services.env`, located before any settings are read."""
    return Path(os.environ.get(f"{ENV_PREFIX}STATE_DIR", ".local")) / "services.env"


def variable(field: str) -> str:
    """The environment variable of a settings field."""
    return f"{ENV_PREFIX}{field.upper()}"


def check_url(value: str, schemes: tuple[str, ...], what: str) -> str:
    """`value` when it is a URL of one of `schemes` (a field validator's check); else ValueError."""
    parts = urlsplit(value)
    if parts.scheme not in schemes or (not parts.hostname and not parts.path):
        raise ValueError(f"expected {what} URL starting with {' or '.join(s + '://' for s in schemes)}")
    return value


def check_postgres_url(value: str) -> str:
    """`value` when it is a PostgreSQL URL that always reaches a writable server; else ValueError.

    A libpq multi-host URL (``postgresql://u@h1:5432,h2:5432/db`` or several ``host=``) tries the
    hosts in order; without ``target_session_attrs=read-write`` (or ``primary``) it would happily
    connect to a standby after a failover and every write would fail.
    """
    check_url(value, ("postgresql", "postgres"), "a PostgreSQL")
    parts = urlsplit(value)
    query = parse_qs(parts.query)
    hosts = [h for item in query.get("host", []) for h in item.split(",") if h]
    several = "," in parts.netloc.rpartition("@")[2] or len(hosts) > 1
    attrs = query.get("target_session_attrs", [""])[-1]
    if several and attrs not in ("read-write", "primary"):
        raise ValueError(
            "a URL with several hosts needs ?target_session_attrs=read-write, "
            "else clients may connect to a standby and fail every write"
        )
    return value


def _explain(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else "?"
        given = item.get("input")
        secret = "password" in field or "secret" in field or "token" in field
        shown = "(secret)" if secret else redact(repr(given))  # a URL may carry a password
        lines.append(f"{variable(field)}: {item['msg']} (got {shown})")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def environment() -> dict[str, str]:
    """The variables settings are read from: the process environment over services.env."""
    env_file = services_env_file()
    values = {k: v for k, v in dotenv_values(env_file).items() if v is not None} if env_file.exists() else {}
    return {**values, **os.environ}


def env_default(name: str) -> dict[str, Any]:
    """Field metadata of a file option whose default a ``WV_<name>`` variable may set fleet-wide.

    ``budgets.latency_ms: float = Field(200.0, gt=0, json_schema_extra=env_default("LATENCY_BUDGET_MS"))``
    declares the option, its default, its bounds and its variable in one place.
    """
    return {"env": variable(name)}


def env_fields(model: type[BaseModel], path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str]]:
    """(option path, variable) of every option of `model` (nested models too) declared with env_default."""
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra
        env = extra.get("env") if isinstance(extra, dict) else None
        if isinstance(env, str):
            yield (*path, name), env
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from env_fields(annotation, (*path, name))


def env_defaults(model: type[BaseModel], env: Mapping[str, str]) -> dict[str, Any]:
    """Nested values for `model` from the variables of its env_default options that are set."""
    values: dict[str, Any] = {}
    for path, name in env_fields(model):
        if name in env:
            node = values
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = env[name]
    return values


class WVSettings(BaseSettings):
    """Base of every settings model: the ``WV_`` prefix, services.env, errors naming the variable."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file_encoding="utf-8", extra="ignore", validate_default=True
    )

    @classmethod
    def load(cls, **overrides: object) -> Self:
        """Read and validate the environment (and services.env); `overrides` win over both."""
        env_file = services_env_file()
        try:
            return cls(_env_file=env_file if env_file.exists() else None, **overrides)  # type: ignore[call-arg]
        except ValidationError as exc:
            raise ConfigError(_explain(exc)) from None

    def secrets(self) -> list[str]:
        """Values of the secret settings that are set, masked in every log line."""
        return secret_values(self)


# --- sections shared by several tiers ---------------------------------------------------
# A tier model lists the sections it needs in this file's order, so any two models compose.


class LoggingSettings(WVSettings):
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    log_format: Literal["json", "console"] = Field("console", description="Log line format.")

    @classmethod
    def startup(cls, **overrides: object) -> Self:
        """What a command does first: load and validate its tier's settings, then configure logging."""
        settings = cls.load(**overrides)
        settings.configure_logging()
        return settings

    def configure_logging(self) -> None:
        """Route this process's logs to stderr in the configured format, secrets masked."""
        configure_logging(self.log_level, self.log_format, self.secrets())


class StateSettings(WVSettings):
    state_dir: Path = Field(
        Path(".local"), description="Folder for all local state (services, models, reports)."
    )
    model_store: Path | None = Field(
        None, description="Model version directories; default `<state_dir>/models`."
    )

    @property
    def models_dir(self) -> Path:
        return self.model_store or self.state_dir / "models"


class DatabaseSettings(WVSettings):
    database_url: str = Field(
        "postgresql://postgres@127.0.0.1:5432/warehouse_vision",
        description=(
            "Application database (PostgreSQL or TimescaleDB); for a Patroni cluster a libpq "
            "multi-host URL with `target_session_attrs=read-write`."
        ),
    )

    shard_map: Path | None = Field(
        None,
        description=(
            "Facility shards: a YAML file naming further databases and the facilities each holds "
            "(README *Facility shards*); unset, every facility lives in WV_DATABASE_URL."
        ),
    )

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, v: str) -> str:
        return check_postgres_url(v)

    @field_validator("shard_map")
    @classmethod
    def _shard_map_exists(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"{v} is not a file")
        return v


class RedisSettings(WVSettings):
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Redis for streams, windows and caches; `redis+sentinel://host:port,host:port/<service>[/<db>]` "
        "follows the master Sentinel names.",
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, v: str) -> str:
        if is_sentinel_url(v):  # redis+sentinel://host:port,host:port/<service>[/<db>]
            parse_sentinel_url(v)
            return v
        return check_url(v, ("redis", "rediss", "unix", SENTINEL_SCHEME), "a Redis")


class KafkaSettings(WVSettings):
    kafka_bootstrap: str = Field(
        "127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated host:port."
    )
    kafka_topic_prefix: str = Field(
        "wv.", description="Prefix of the topics detections, anomalies, dead-letter."
    )

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap(cls, v: str) -> str:
        for server in v.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError("expected comma-separated host:port pairs, e.g. 127.0.0.1:9092")
        return v

    def topic(self, name: Literal["detections", "anomalies", "dead-letter"]) -> str:
        return f"{self.kafka_topic_prefix}{name}"


class GrpcClientSettings(WVSettings):
    grpc_address: str = Field(
        "127.0.0.1:50051", description="Address `wv realtime serve` binds and clients dial."
    )
    grpc_token: SecretStr | None = Field(
        None, description="Bearer token required by the gRPC service (secret)."
    )


METRICS_PORT_DESCRIPTION = (
    "Prometheus port (0 disables); each tier has its own default, so an edge and the centre can share "
    "one machine."
)


TIER_OWN_DEFAULTS = frozenset({"metrics_port"})
"""Shared settings each tier redeclares with its own default (same type, bounds and description)."""


class MetricsSettings(WVSettings):
    """The Prometheus endpoint; each tier redeclares ``metrics_port`` with its own default port."""

    metrics_host: str = Field("127.0.0.1", description="Interface the Prometheus endpoints bind to.")
    metrics_port: int = Field(9464, ge=0, le=65535, description=METRICS_PORT_DESCRIPTION)


class FacilitySettings(WVSettings):
    facilities: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["FAC-001", "FAC-002", "FAC-003"],
        description="Facility ids, comma-separated; they are the Dagster facility partitions.",
    )
    facility_timezone: str = Field(
        "UTC", description="Default IANA time zone of facilities without their own."
    )

    @field_validator("facilities", mode="before")
    @classmethod
    def _split_facilities(cls, v: object) -> object:
        if isinstance(v, str):
            v = [f.strip() for f in v.split(",") if f.strip()]
        if isinstance(v, list) and not v:
            raise ValueError("expected at least one facility id")
        return v


class HardExampleSettings(WVSettings):
    hard_example_low: float = Field(0.65, ge=0, le=1, description="Lower confidence bound of hard examples.")
    hard_example_high: float = Field(0.85, ge=0, le=1, description="Upper confidence bound of hard examples.")
