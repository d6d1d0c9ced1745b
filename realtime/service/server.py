"""Assemble and run the gRPC server (``wv realtime serve``).

Token authentication is mandatory (``WV_GRPC_TOKEN``); TLS turns on with a certificate and key,
and mTLS with a client CA as well. The standard health service reports NOT_SERVING while the
database circuit breaker is open; server reflection lists the services for tools like grpcurl.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from contract.proto import warehouse_vision_pb2 as pb
from contract.proto import warehouse_vision_pb2_grpc as pb_grpc
from foundation.redis_connect import connect
from foundation.resilience import BreakerState
from foundation.settings import ConfigError
from realtime import kafka, metrics
from realtime.codec import Validator
from realtime.dead_letters import DeadLetterPublisher
from realtime.facility_cache import FacilityCache
from realtime.resilience import database_breaker
from realtime.service.interceptors import MetricsInterceptor, TokenAuthInterceptor
from realtime.service.servicer import Shard, WarehouseVisionServicer
from realtime.settings import CentreSettings
from realtime.sink import EventSink
from realtime.storage.connection import ConnectorPool
from realtime.storage.shards import HOME, ShardMap
from realtime.windows.streams import StreamPublisher

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["WarehouseVisionService"].full_name


def _default(field: str) -> Any:
    return CentreSettings.model_fields[field].default


@dataclass(frozen=True)
class ServiceConfig:
    """What the server needs; :meth:`from_settings` maps and checks the ``WV_*`` settings.

    Tests and benchmarks embed the server with a few fields; the rest default to the settings'
    own defaults, and no Kafka or Redis means no dead-letter topic and no stream fan-out."""

    address: str
    token: str
    database_url: str
    max_future_skew_s: float = _default("max_future_skew_s")
    max_message_bytes: int = _default("grpc_max_message_bytes")
    max_workers: int = _default("grpc_max_workers")
    max_call_s: float = _default("grpc_max_call_s")
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    kafka_bootstrap: str | None = None
    dead_letter_topic: str = _default("kafka_topic_prefix") + "dead-letter"
    redis_url: str | None = None
    stream_maxlen: int = _default("stream_maxlen")
    shards: ShardMap | None = None
    """Facility shards; None: every facility in ``database_url`` (which must be the home shard's)."""

    @classmethod
    def from_settings(cls, settings: CentreSettings) -> ServiceConfig:
        if settings.grpc_token is None or not settings.grpc_token.get_secret_value():
            raise ConfigError(
                "WV_GRPC_TOKEN: required by `wv realtime serve` (callers send it as a bearer token)"
            )
        if (settings.grpc_tls_cert is None) != (settings.grpc_tls_key is None):
            raise ConfigError("WV_GRPC_TLS_CERT and WV_GRPC_TLS_KEY: set both to enable TLS, or neither")
        if settings.grpc_tls_client_ca is not None and settings.grpc_tls_cert is None:
            raise ConfigError("WV_GRPC_TLS_CLIENT_CA: mTLS needs WV_GRPC_TLS_CERT and WV_GRPC_TLS_KEY too")
        for name in ("grpc_tls_cert", "grpc_tls_key", "grpc_tls_client_ca"):
            path = getattr(settings, name)
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"WV_{name.upper()}: no such file {path}")
        return cls(
            address=settings.grpc_address,
            token=settings.grpc_token.get_secret_value(),
            database_url=settings.database_url,
            max_future_skew_s=settings.max_future_skew_s,
            max_message_bytes=settings.grpc_max_message_bytes,
            max_workers=settings.grpc_max_workers,
            max_call_s=settings.grpc_max_call_s,
            tls_cert=settings.grpc_tls_cert,
            tls_key=settings.grpc_tls_key,
            tls_client_ca=settings.grpc_tls_client_ca,
            kafka_bootstrap=settings.kafka_bootstrap,
            dead_letter_topic=settings.topic("dead-letter"),
            redis_url=settings.redis_url,
            stream_maxlen=settings.stream_maxlen,
            shards=ShardMap.from_settings(settings) if settings.shard_map else None,
        )


class RunningServer:
    """A started server and what it holds open; :meth:`stop` drains calls and closes all."""

    def __init__(self, server: grpc.Server, port: int, closers: list) -> None:
        self.server = server
        self.port = port
        self._closers = closers

    def stop(self, grace_s: float = 10.0) -> None:
        self.server.stop(grace_s).wait()
        for close in self._closers:
            close()


def _breaker_metric(shard: str) -> Callable[[BreakerState], None]:
    """A shard other than home only reports its breaker: one facility shard down must not take
    every pod out of the load balancer (health follows the home shard, which holds the registry)."""
    return lambda state: metrics.BREAKER_OPEN.labels(f"grpc:{shard}").set(state == BreakerState.OPEN)


def _credentials(config: ServiceConfig) -> grpc.ServerCredentials | None:
    if config.tls_cert is None or config.tls_key is None:
        return None
    client_ca = config.tls_client_ca.read_bytes() if config.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(config.tls_key.read_bytes(), config.tls_cert.read_bytes())],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


def start_server(config: ServiceConfig) -> RunningServer:
    """Build, bind and start the server; ``config.address`` may use port 0 (see ``.port``)."""
    health_servicer = health.HealthServicer()

    def on_breaker(state: BreakerState) -> None:
        metrics.BREAKER_OPEN.labels("grpc").set(state == BreakerState.OPEN)
        status = health_pb2.HealthCheckResponse.NOT_SERVING if state == BreakerState.OPEN else None
        health_servicer.set(SERVICE_NAME, status or health_pb2.HealthCheckResponse.SERVING)

    shard_map = config.shards or ShardMap.single(config.database_url)
    pools = {
        name: ConnectorPool(url, size=max(2, config.max_workers // 2), application_name="wv-grpc")
        for name, url in shard_map.urls.items()
    }
    closers: list = [pool.close for pool in pools.values()]
    producer = None
    if config.kafka_bootstrap:
        producer = kafka.producer(config.kafka_bootstrap, client_id="wv-grpc")
        closers.append(lambda: producer.close(timeout=5))
    redis_client = connect(config.redis_url, socket_timeout=2, failover_s=2.0) if config.redis_url else None
    if redis_client is not None:
        closers.append(redis_client.close)
    dead_letters = DeadLetterPublisher(producer, config.dead_letter_topic) if producer else None
    streams = StreamPublisher(redis_client, maxlen=config.stream_maxlen) if redis_client else None
    shards = {
        name: Shard(
            EventSink(
                pool.connection,
                component="grpc" if name == HOME else f"grpc:{name}",
                breaker=database_breaker(on_change=on_breaker if name == HOME else _breaker_metric(name)),
                dead_letters=dead_letters,
                streams=streams,
            ),
            pool.connection,
        )
        for name, pool in pools.items()
    }
    registry = FacilityCache.from_database(config.database_url)
    validator = Validator(
        registry,
        known_camera=registry.camera,
        max_future_skew_s=config.max_future_skew_s,
        max_message_bytes=config.max_message_bytes,
    )
    server = grpc.server(
        ThreadPoolExecutor(max_workers=config.max_workers, thread_name_prefix="wv-grpc"),
        interceptors=[MetricsInterceptor(), TokenAuthInterceptor(config.token)],
        options=[
            ("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.max_send_message_length", config.max_message_bytes),
        ],
        maximum_concurrent_rpcs=config.max_workers * 4,
    )
    servicer = WarehouseVisionServicer(
        shards, shard_map.shard_of, validator, windows=redis_client, max_call_s=config.max_call_s
    )
    closers.append(servicer.close)
    pb_grpc.add_WarehouseVisionServiceServicer_to_server(servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in (SERVICE_NAME, ""):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )
    credentials = _credentials(config)
    if credentials is None:
        port = server.add_insecure_port(config.address)
    else:
        port = server.add_secure_port(config.address, credentials)
    if not port:
        for close in closers:
            close()
        raise ConfigError(f"WV_GRPC_ADDRESS: cannot bind {config.address}")
    server.start()
    log.info("gRPC %s listening on port %d (%s)", SERVICE_NAME, port, "TLS" if credentials else "plaintext")
    return RunningServer(server, port, closers)


def serve(config: ServiceConfig, *, metrics_host: str = "127.0.0.1", metrics_port: int = 0) -> None:
    """Run until SIGTERM/SIGINT, then finish in-flight calls (10 s grace) and exit."""
    metrics.serve_metrics(metrics_host, metrics_port)
    running = start_server(config)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    log.info("stopping gRPC server")
    running.stop()
