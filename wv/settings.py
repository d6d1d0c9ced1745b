"""One validated settings object for every Warehouse Vision process.

Values come from ``WV_*`` environment variables, then from ``$WV_STATE_DIR/services.env``
(written by ``wv services up`` for services it started locally), then from the defaults.
A bad value stops start-up with a :class:`ConfigError` naming the variable.
"""

from __future__ import annotations

import os
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "WV_"


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message names the variable."""


def state_dir_from_env() -> Path:
    """The local state folder, read before the full settings so services.env can be located."""
    return Path(os.environ.get(f"{ENV_PREFIX}STATE_DIR", ".local"))


def _check_url(value: str, schemes: tuple[str, ...], what: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in schemes or (not parts.hostname and not parts.path):
        raise ValueError(f"expected {what} URL starting with {' or '.join(s + '://' for s in schemes)}")
    return value


class Settings(BaseSettings):
    """Every setting of the platform. Field ``foo_bar`` is read from ``WV_FOO_BAR``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    # --- local state and services -------------------------------------------------------
    state_dir: Path = Field(
        Path(".local"), description="Folder for all local state (services, models, reports)."
    )
    database_url: str = Field(
        "postgresql://postgres@127.0.0.1:5432/warehouse_vision",
        description="Application database (PostgreSQL or TimescaleDB).",
    )
    dagster_database_url: str | None = Field(
        None,
        description="Dagster run/event/schedule storage; default: the application server, database `<name>_dagster`.",
    )
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis for streams, windows and caches.")
    kafka_bootstrap: str = Field(
        "127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated host:port."
    )
    kafka_topic_prefix: str = Field(
        "wv.", description="Prefix of the topics detections, anomalies, dead-letter."
    )
    kafka_fetch_max_wait_ms: int = Field(
        100,
        ge=1,
        le=5000,
        description=(
            "Longest a consumer fetch waits for data. Kafka answers as soon as data is there; the "
            "development broker (Tansu) waits it out (about half of it is added to p99 latency) and "
            "answers empty when it cannot read the log in time, so too short a wait starves a "
            "backlog on a loaded machine (10 ms did, in the soak)."
        ),
    )

    # --- facilities ---------------------------------------------------------------------
    facilities: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["FAC-001", "FAC-002", "FAC-003"],
        description="Facility ids, comma-separated; they are the Dagster facility partitions.",
    )
    facility_timezone: str = Field(
        "UTC", description="Default IANA time zone of facilities without their own."
    )

    # --- edge ---------------------------------------------------------------------------
    model_store: Path | None = Field(
        None, description="Model version directories; default `<state_dir>/models`."
    )
    engine: Literal["onnxruntime", "torch", "tensorrt"] = Field(
        "onnxruntime", description="Edge inference engine."
    )
    precision: Literal["fp32", "fp16", "bf16", "int8"] = Field(
        "int8", description="Edge inference precision."
    )
    latency_budget_ms: float = Field(200.0, gt=0, description="End-to-end latency budget per frame.")
    inference_deadline_ms: float = Field(
        45.0, gt=0, description="Primary-model deadline before the fallback answers."
    )
    outbox_ttl_hours: float = Field(
        48.0, gt=0, description="Edge outbox time-to-live for unacknowledged events."
    )
    outbox_quota_mb: float = Field(512.0, gt=0, description="Edge outbox disk quota.")

    # --- central tier -------------------------------------------------------------------
    grpc_address: str = Field(
        "127.0.0.1:50051", description="Address `wv realtime serve` binds and clients dial."
    )
    grpc_token: SecretStr | None = Field(
        None, description="Bearer token required by the gRPC service (secret)."
    )
    grpc_tls_cert: Path | None = Field(None, description="Server certificate (PEM) enabling TLS on gRPC.")
    grpc_tls_key: Path | None = Field(None, description="Server private key (PEM) for gRPC TLS.")
    grpc_tls_client_ca: Path | None = Field(
        None, description="CA bundle; when set, gRPC requires client certificates (mTLS)."
    )
    metrics_host: str = Field("127.0.0.1", description="Interface the Prometheus endpoints bind to.")
    metrics_port: int = Field(9464, ge=0, le=65535, description="Prometheus port (0 disables).")
    ingest_batch_size: int = Field(5000, gt=0, description="Max events per ingest micro-batch.")
    ingest_batch_ms: float = Field(
        200.0, gt=0, description="Max wait before an ingest micro-batch is written."
    )
    ingest_writers: int = Field(
        2,
        ge=1,
        le=8,
        description="Writer threads (database connections) per ingest worker: batches in flight.",
    )
    max_future_skew_s: float = Field(
        300.0, ge=0, description="Events further in the future are dead-lettered."
    )
    ingest_group_id: str = Field(
        "wv-ingest", min_length=1, description="Kafka consumer group of ingest workers."
    )
    ingest_max_message_bytes: int = Field(
        4 * 1024 * 1024, gt=0, description="Larger Kafka messages are dead-lettered as oversized."
    )
    stream_maxlen: int = Field(100_000, gt=0, description="Approximate cap of each facility's Redis stream.")
    window_ttl_s: int = Field(6 * 3600, gt=0, description="How long per-minute Redis windows are kept.")
    grpc_max_message_bytes: int = Field(16 * 1024 * 1024, gt=0, description="gRPC message size limit.")
    grpc_max_workers: int = Field(16, gt=0, description="gRPC handler threads (concurrent calls).")
    rules_file: Path | None = Field(
        None, description="Anomaly rules YAML; default: the packaged default rules."
    )
    rules_interval_s: float = Field(
        60.0, gt=0, description="Seconds between `wv realtime rules` evaluations."
    )
    retention_days: int = Field(90, gt=0, description="Days of time-series data kept.")
    partition_days_ahead: int = Field(
        7, ge=1, le=366, description="Daily partitions kept ready ahead of today (plain PostgreSQL)."
    )

    # --- orchestration and quality ------------------------------------------------------
    dagster_host: str = Field("127.0.0.1", description="Interface the Dagster webserver binds to.")
    dagster_port: int = Field(3000, ge=1, le=65535, description="Dagster webserver port.")
    drift_accuracy_threshold: float = Field(
        0.94, gt=0, lt=1, description="Accuracy below which retraining starts."
    )
    verified_sample_rate: float = Field(
        0.01, gt=0, le=1, description="Share of decisions sampled for verification."
    )
    hard_example_low: float = Field(0.65, ge=0, le=1, description="Lower confidence bound of hard examples.")
    hard_example_high: float = Field(0.85, ge=0, le=1, description="Upper confidence bound of hard examples.")
    wandb_mode: Literal["offline", "online", "disabled"] = Field(
        "offline", description="Weights & Biases mode."
    )
    partitions_start: date = Field(
        date(2025, 1, 1), description="First day of the Dagster daily/weekly partitions."
    )
    retrain_steps: int = Field(
        300, gt=0, description="Fine-tuning steps of a drift-triggered retraining run."
    )

    # --- ERP ----------------------------------------------------------------------------
    erp_adapter: Literal["files", "sap", "salesforce"] = Field(
        "files", description="Where ERP sync sends records."
    )
    sap_base_url: str | None = Field(None, description="SAP OData service root URL.")
    sap_username: str | None = Field(None, description="SAP basic-auth user.")
    sap_password: SecretStr | None = Field(None, description="SAP basic-auth password (secret).")
    sap_oauth_token_url: str | None = Field(None, description="SAP OAuth token URL (instead of basic auth).")
    sap_client_id: str | None = Field(None, description="SAP OAuth client id.")
    sap_client_secret: SecretStr | None = Field(None, description="SAP OAuth client secret (secret).")
    salesforce_instance_url: str | None = Field(None, description="Salesforce instance URL.")
    salesforce_token_url: str | None = Field(None, description="Salesforce OAuth token URL.")
    salesforce_client_id: str | None = Field(None, description="Salesforce connected-app client id.")
    salesforce_client_secret: SecretStr | None = Field(None, description="Salesforce client secret (secret).")
    salesforce_api_version: str = Field(
        "v60.0",
        pattern=r"^v\d+\.\d$",
        description="Salesforce REST API version used in /services/data/<version>/.",
    )
    sap_damage_claim_set: str = Field(
        "DamageClaimSet", description="SAP OData entity set receiving damage claims."
    )
    sap_discrepancy_set: str = Field(
        "InventoryDiscrepancySet", description="SAP OData entity set receiving per-zone discrepancy lines."
    )
    erp_batch_size: int = Field(
        50, gt=0, le=1000, description="Outbox messages per ERP request ($batch) or pass."
    )
    erp_retry_attempts: int = Field(
        5, gt=0, description="Tries per message within one dispatch (429/503/network)."
    )
    erp_backoff_s: float = Field(
        1.0, gt=0, description="First backoff delay; doubles per try (plus Retry-After)."
    )
    erp_backoff_max_s: float = Field(
        60.0, gt=0, description="Longest wait inside a dispatch; longer waits defer."
    )
    erp_park_after: int = Field(
        20, gt=0, description="Total tries after which a still-failing message is parked."
    )
    erp_timeout_s: float = Field(30.0, gt=0, description="HTTP timeout of ERP requests.")
    analytics_throughput_tolerance: float = Field(
        0.5, gt=0, description="Asset check: packages seen may differ from expected by this share."
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    log_format: Literal["json", "console"] = Field("console", description="Log line format.")

    @field_validator("database_url", "dagster_database_url")
    @classmethod
    def _postgres_url(cls, v: str | None) -> str | None:
        return None if v is None else _check_url(v, ("postgresql", "postgres"), "a PostgreSQL")

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, v: str) -> str:
        return _check_url(v, ("redis", "rediss", "unix"), "a Redis")

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap(cls, v: str) -> str:
        for server in v.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError("expected comma-separated host:port pairs, e.g. 127.0.0.1:9092")
        return v

    @field_validator("facilities", mode="before")
    @classmethod
    def _split_facilities(cls, v: object) -> object:
        if isinstance(v, str):
            v = [f.strip() for f in v.split(",") if f.strip()]
        if isinstance(v, list) and not v:
            raise ValueError("expected at least one facility id")
        return v

    @property
    def models_dir(self) -> Path:
        return self.model_store or self.state_dir / "models"

    @property
    def dagster_url(self) -> str:
        """Dagster storage URL: its own database next to the application one."""
        if self.dagster_database_url:
            return self.dagster_database_url
        parts = urlsplit(self.database_url)
        return parts._replace(path=parts.path.rstrip("/") + "_dagster").geturl()

    def topic(self, name: Literal["detections", "anomalies", "dead-letter"]) -> str:
        return f"{self.kafka_topic_prefix}{name}"


def _explain(error: ValidationError) -> str:
    from wv.logging import redact  # imported here: wv.logging imports this module

    lines = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else "?"
        given = item.get("input")
        secret = "password" in field or "secret" in field or "token" in field
        shown = "(secret)" if secret else redact(repr(given))  # a URL may carry a password
        lines.append(f"{ENV_PREFIX}{field.upper()}: {item['msg']} (got {shown})")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def load_settings(**overrides: object) -> Settings:
    """Build and validate the settings, turning validation errors into a :class:`ConfigError`."""
    env_file = state_dir_from_env() / "services.env"
    try:
        return Settings(_env_file=env_file if env_file.exists() else None, **overrides)  # type: ignore[call-arg, arg-type]
    except ValidationError as exc:
        raise ConfigError(_explain(exc)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings, validated once."""
    return load_settings()
