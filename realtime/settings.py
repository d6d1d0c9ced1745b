"""The central tier's settings: ingest, the gRPC service, windows, rules and storage maintenance."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from foundation.settings import (
    METRICS_PORT_DESCRIPTION,
    DatabaseSettings,
    FacilitySettings,
    GrpcClientSettings,
    KafkaSettings,
    LoggingSettings,
    MetricsSettings,
    RedisSettings,
    StateSettings,
)


class CentreSettings(
    LoggingSettings,
    StateSettings,
    DatabaseSettings,
    KafkaSettings,
    GrpcClientSettings,
    RedisSettings,
    MetricsSettings,
    FacilitySettings,
):
    """Everything ``wv realtime …`` and ``wv db …`` read from the environment (``WV_…``)."""

    metrics_port: int = Field(9465, ge=0, le=65535, description=METRICS_PORT_DESCRIPTION)

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
    grpc_tls_cert: Path | None = Field(None, description="Server certificate (PEM) enabling TLS on gRPC.")
    grpc_tls_key: Path | None = Field(None, description="Server private key (PEM) for gRPC TLS.")
    grpc_tls_client_ca: Path | None = Field(
        None, description="CA bundle; when set, gRPC requires client certificates (mTLS)."
    )
    grpc_max_message_bytes: int = Field(16 * 1024 * 1024, gt=0, description="gRPC message size limit.")
    grpc_max_workers: int = Field(16, gt=0, description="gRPC handler threads (concurrent calls).")
    grpc_call_timeout_s: float = Field(
        30.0,
        gt=0,
        description="Deadline the centre's gRPC client helper gives every unary call whose caller passes none.",
    )
    grpc_max_call_s: float = Field(
        60.0,
        gt=0,
        description="The server's cap on a call without a deadline (or a longer one): a query's statement "
        "timeout, and how long a stream batch is retried while the database is down, then UNAVAILABLE.",
    )
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
    ingest_held_max_events: int = Field(
        100_000,
        gt=0,
        description="Events an ingest worker holds in memory for facility shards that are down while the "
        "other shards' events keep flowing; beyond it the worker stops consuming until the shard is back.",
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
    window_rebuild_minutes: int = Field(
        60,
        gt=0,
        description="How far back `wv realtime windows` rebuilds windows from the database when Redis lost data "
        "(a failover, a restart without persistence).",
    )
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
