"""``wv realtime``: the central tier's long-running processes.

``run`` starts Kafka ingest workers, ``serve`` the gRPC service, ``windows`` the Redis window
aggregator, ``rules`` the periodic anomaly rules. Each stops cleanly on SIGTERM/SIGINT. With
facility shards (``WV_SHARD_MAP``) each reads and writes a facility's rows on its shard.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta

import psycopg
import typer
from kafka.errors import KafkaConnectionError, KafkaTimeoutError

from foundation.redaction import display_url
from foundation.redis_connect import RedisMisconfigured, connect, require_sentinels
from realtime import kafka, metrics
from realtime.ingest.supervisor import run_workers
from realtime.ingest.worker import IngestConfig
from realtime.rules.config import load_rules
from realtime.rules.loader import check_windows_hold
from realtime.rules.runner import RuleRunner
from realtime.service.server import ServiceConfig
from realtime.service.server import serve as serve_grpc
from realtime.settings import CentreSettings
from realtime.sink import EventSink
from realtime.storage.connection import Connector
from realtime.storage.shards import HOME, ShardMap
from realtime.windows.aggregator import WindowAggregator
from realtime.windows.recompute import WindowRepair, rebuild
from realtime.windows.streams import StreamPublisher

log = logging.getLogger(__name__)

app = typer.Typer(
    help="Run the central ingest workers, gRPC service, windows and rules.", no_args_is_help=True
)


@contextmanager
def _unreachable_services(settings: CentreSettings) -> Iterator[None]:
    """Turn "cannot reach the broker/database" at start-up into one line naming the setting."""
    try:
        yield
    except (KafkaConnectionError, KafkaTimeoutError):
        typer.echo(f"error: WV_KAFKA_BOOTSTRAP={settings.kafka_bootstrap}: no broker answers", err=True)
        raise typer.Exit(1) from None
    except psycopg.OperationalError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        typer.echo(f"error: WV_DATABASE_URL={display_url(settings.database_url)}: {first}", err=True)
        raise typer.Exit(1) from None


def _check_redis(settings: CentreSettings) -> None:
    """A sentinel URL whose hosts are no sentinels, or that names a service none monitors, stops
    start-up with one line naming WV_REDIS_URL; sentinels merely down are an outage (ridden out)."""
    try:
        why = require_sentinels(settings.redis_url, timeout=2.0)
    except RedisMisconfigured as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if why:
        log.warning(
            "WV_REDIS_URL=%s: %s; carrying on, Redis is retried", display_url(settings.redis_url), why
        )


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


@app.command()
def run(
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="Worker processes in the consumer group."),
    create_topics: bool = typer.Option(True, help="Create missing topics before consuming."),
    partitions: int = typer.Option(6, min=1, help="Partitions of topics this command creates."),
) -> None:
    """Consume wv.detections into the database (offsets committed after it)."""
    settings = CentreSettings.startup()
    _check_redis(settings)
    config = IngestConfig.from_settings(settings)
    if create_topics:
        topics = [config.detections_topic, config.dead_letter_topic]
        with _unreachable_services(settings):
            kafka.ensure_topics(config.bootstrap, topics, partitions=partitions)
    code = run_workers(
        config,
        workers,
        logs=settings,
        metrics_host=settings.metrics_host,
        metrics_port=settings.metrics_port,
    )
    raise typer.Exit(code)


@app.command()
def serve() -> None:
    """Serve WarehouseVisionService on WV_GRPC_ADDRESS (token required; TLS/mTLS optional)."""
    settings = CentreSettings.startup()
    _check_redis(settings)
    serve_grpc(
        ServiceConfig.from_settings(settings),
        metrics_host=settings.metrics_host,
        metrics_port=settings.metrics_port,
    )


@app.command()
def windows(
    rebuild_minutes: int = typer.Option(
        0, "--rebuild-minutes", min=0, help="First rewrite the last N minutes of windows from the database."
    ),
) -> None:
    """Maintain per-facility per-minute windows from the facility streams (consumer group).

    Windows Redis lost (a failover to a replica that lacked the last writes, a restart without
    persistence, entries ingest could not publish) are rebuilt from the database on their own:
    the last WV_WINDOW_REBUILD_MINUTES on a new Redis data history, the announced minutes on a
    fan-out gap (realtime.windows.aggregator). --rebuild-minutes forces a rebuild at start.
    """
    settings = CentreSettings.startup()
    _check_redis(settings)
    client = connect(settings.redis_url, socket_timeout=10, failover_s=15.0)
    shards = ShardMap.from_settings(settings)
    connectors = {name: Connector(url, application_name="wv-windows") for name, url in shards.urls.items()}

    def facility_connection(facility: str) -> AbstractContextManager[psycopg.Connection]:
        return connectors[shards.shard_of(facility)].connection()

    if rebuild_minutes:
        end = datetime.now(UTC)
        with _unreachable_services(settings):
            for facility in settings.facilities:
                start = end - timedelta(minutes=rebuild_minutes)
                with facility_connection(facility) as conn:
                    written = rebuild(client, conn, facility, start, end, ttl_s=settings.window_ttl_s)
                typer.echo(f"{facility}: {written} windows rebuilt")
    repair = WindowRepair(
        connectors[HOME].connection,
        ttl_s=settings.window_ttl_s,
        recent_minutes=settings.window_rebuild_minutes,
        facility_connection=facility_connection,
    )
    metrics.serve_metrics(settings.metrics_host, settings.metrics_port)
    try:
        WindowAggregator(client, ttl_s=settings.window_ttl_s, repair=repair).run(_stop_on_signals())
    finally:
        for connector in connectors.values():
            connector.close()


def _on_shard(shards: ShardMap, name: str) -> Callable[[str], bool]:
    """Whether a facility lives on shard ``name`` (whose rule runner judges it)."""
    return lambda facility: shards.shard_of(facility) == name


@app.command()
def rules(
    once: bool = typer.Option(False, "--once", help="Evaluate the last --lookback-minutes once and exit."),
    lookback_minutes: int = typer.Option(60, min=1, help="How far the first evaluation looks back."),
) -> None:
    """Evaluate the anomaly rules (WV_RULES_FILE) every WV_RULES_INTERVAL_S.

    Flags are stored once, fanned out to their facility's stream and published on wv.anomalies;
    rate rules read the per-minute windows `wv realtime windows` keeps on Redis.
    """
    settings = CentreSettings.startup()
    _check_redis(settings)
    ruleset = load_rules(settings.rules_file)
    check_windows_hold(ruleset, ttl_s=settings.window_ttl_s, rebuild_minutes=settings.window_rebuild_minutes)
    shards = ShardMap.from_settings(settings)
    connectors = [Connector(url, application_name="wv-rules") for url in shards.urls.values()]
    client = connect(settings.redis_url, socket_timeout=5, failover_s=5.0)
    streams = StreamPublisher(client, maxlen=settings.stream_maxlen)
    with _unreachable_services(settings):
        kafka.ensure_topics(settings.kafka_bootstrap, [settings.topic("anomalies")], partitions=6)
        producer = kafka.producer(settings.kafka_bootstrap, client_id="wv-rules")
    runners = [  # one per shard: each judges the events and windows of its own facilities
        RuleRunner(
            ruleset,
            connector.connection,
            EventSink(
                connector.connection,
                component="rules" if name == HOME else f"rules:{name}",
                streams=streams,
            ),
            client,
            owns=_on_shard(shards, name),
            producer=producer,
            anomalies_topic=settings.topic("anomalies"),
            rates_catch_up=timedelta(seconds=settings.window_ttl_s),
        )
        for name, connector in zip(shards.names, connectors, strict=True)
    ]
    lookback = timedelta(minutes=lookback_minutes)
    try:
        if once:
            now = datetime.now(UTC)
            flags = sum(len(runner.evaluate(now - lookback, now)) for runner in runners)
            typer.echo(f"{flags} flags due in the last {lookback_minutes} minutes")
            if any(runner.rates_waiting_since for runner in runners):
                typer.echo(
                    "rate rules not judged: the windows are not current (Redis down, or lost data "
                    "not rebuilt yet: is `wv realtime windows` running?)",
                    err=True,
                )
        else:
            metrics.serve_metrics(settings.metrics_host, settings.metrics_port)
            stop = _stop_on_signals()
            threads = [
                threading.Thread(
                    target=runner.run,
                    args=(stop,),
                    kwargs={"interval_s": settings.rules_interval_s, "lookback": lookback},
                    name=f"wv-rules-{name}",
                )
                for name, runner in zip(shards.names, runners, strict=True)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        producer.close(timeout=5)
        client.close()
        for connector in connectors:
            connector.close()
