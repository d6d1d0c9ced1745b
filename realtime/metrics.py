"""Prometheus metrics of the central tier, one registry per process.

Each worker process serves its own endpoint (``WV_METRICS_PORT`` + worker index) bound to
``WV_METRICS_HOST`` (127.0.0.1 unless configured otherwise), so no multiprocess mode is needed.
A port in use stops start-up with an error naming ``WV_METRICS_PORT`` (0 disables metrics).
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from foundation.settings import ConfigError

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0)

CONSUMED = Counter("wv_ingest_messages_consumed", "Kafka messages consumed.", ["topic"])
EVENTS_WRITTEN = Counter("wv_ingest_events_written", "Events newly stored.", ["source"])
DUPLICATES = Counter("wv_ingest_duplicates_skipped", "Events and flags already stored (replays).", ["source"])
FLAGS_WRITTEN = Counter("wv_ingest_flags_written", "Anomaly flags newly stored.", ["source"])
DEAD_LETTERED = Counter("wv_ingest_dead_lettered", "Messages or events dead-lettered.", ["source", "reason"])
BATCH_EVENTS = Histogram(
    "wv_ingest_batch_events",
    "Events per written micro-batch.",
    buckets=(1, 10, 50, 100, 500, 1000, 2500, 5000, 10000, 25000),
)
COMMIT_SECONDS = Histogram(
    "wv_ingest_commit_seconds", "Database write+commit time per batch.", buckets=_LATENCY_BUCKETS
)
EVENT_LAG_SECONDS = Histogram(
    "wv_ingest_event_to_commit_seconds",
    "Event time to database commit (end to end; a sample of up to 50 events per batch).",
    buckets=(0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
CONSUMER_LAG = Gauge("wv_ingest_consumer_lag", "Messages behind the partition's end.", ["topic", "partition"])
DB_RETRIES = Counter("wv_db_retries", "Database calls retried after a transient failure.", ["component"])
BREAKER_OPEN = Gauge("wv_db_circuit_open", "1 while the database circuit breaker is open.", ["component"])
HELD_EVENTS = Gauge(
    "wv_ingest_held_events", "Events an ingest worker holds for facility shards that are down."
)
STREAM_PUBLISH_FAILURES = Counter("wv_stream_publish_failures", "Redis stream fan-out failures.")
WINDOW_ENTRIES = Counter("wv_window_entries", "Stream entries applied to windows.", ["kind", "outcome"])
WINDOW_REBUILDS = Counter(
    "wv_window_rebuilds",
    "Automatic window rebuilds from the database: 'lineage' (Redis lost data), 'gap' (fan-out entries not published).",
    ["reason"],
)
RULE_PASSES = Counter(
    "wv_rule_passes",
    "Rule evaluation passes: 'ok', or 'postponed' while the database is unavailable.",
    ["outcome"],
)
RULE_RATES_WAITING = Gauge(
    "wv_rule_rates_waiting",
    "1 while a rule runner's rate rules wait for the windows (Redis down, or lost data not rebuilt yet).",
    ["runner"],
)
GRPC_SECONDS = Histogram(
    "wv_grpc_server_handling_seconds", "gRPC handling time.", ["method", "code"], buckets=_LATENCY_BUCKETS
)


def serve_metrics(host: str, port: int) -> bool:
    """Expose this process's metrics on ``host:port``; False when disabled (port 0).

    A port that cannot be bound stops start-up with a :class:`ConfigError` naming the setting:
    a centre process without its metrics would look healthy to nobody who scrapes it.
    """
    if not port:
        return False
    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        raise ConfigError(_unusable(host, port, exc)) from None
    return True


def check_ports(host: str, ports: Sequence[int]) -> None:
    """Raise :class:`ConfigError` unless every port (0: disabled) can be bound on ``host`` now.

    The ingest supervisor checks its workers' ports (``WV_METRICS_PORT`` + index) before it
    starts them, so a taken port is one clear error instead of a worker restarted forever.
    """
    for port in ports:
        if not port:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                raise ConfigError(_unusable(host, port, exc)) from None


def _unusable(host: str, port: int, exc: OSError) -> str:
    return (
        f"WV_METRICS_PORT: cannot serve metrics on {host}:{port} ({exc.strerror or exc}); "
        "set a free port, or 0 to disable metrics"
    )
