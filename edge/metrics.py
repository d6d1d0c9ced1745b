"""Prometheus metrics of the edge service, on its own registry (several services per process in tests).

Latency histograms are observed on the hot path; everything the components already count
(drops, reconnects, outbox state, fallbacks, model lifecycle) is read at scrape time by a
collector, so the components hold plain counters and never depend on Prometheus.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from wsgiref.simple_server import make_server

from prometheus_client import CollectorRegistry, Histogram, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer, _SilentHandler
from prometheus_client.registry import Collector

from foundation.settings import ConfigError

Health = Callable[[], tuple[bool, dict[str, Any]]]
"""``/healthz``: (alive, details); alive False answers 503."""


class MetricsPortError(ConfigError):
    """The metrics endpoint cannot bind its port (in use, or not allowed)."""


STAGE_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.02,
    0.035,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.5,
    1.0,
    2.0,
    5.0,
)


class EdgeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.stage = Histogram(
            "wv_edge_stage_seconds",
            "Time per frame in each pipeline stage (end_to_end: capture to outbox).",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "wv_edge_batch_size",
            "Frames per inference batch.",
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64),
            registry=self.registry,
        )
        self.delivery = Histogram(
            "wv_edge_delivery_seconds",
            "Time to get one batch of events acknowledged by the centre.",
            buckets=STAGE_BUCKETS,
            registry=self.registry,
        )
        self._server: Any = None
        self._stages: dict[str, Histogram] = {}

    def observe_stages(self, timings_ms: dict[str, float]) -> None:
        """Every frame's stage times (each stage's histogram looked up once, not per frame)."""
        for stage, ms in timings_ms.items():
            child = self._stages.get(stage)
            if child is None:
                child = self._stages[stage] = self.stage.labels(stage.removesuffix("_ms"))
            child.observe(ms / 1000.0)

    def add_collector(self, read: Callable[[], Iterable[Metric]]) -> None:
        self.registry.register(_Callback(read))

    def serve(self, host: str, port: int, health: Health | None = None) -> int:
        """Expose /metrics (and /healthz when `health` is given) on host:port (0 = disabled).

        Returns the bound port; a port that cannot be bound raises MetricsPortError naming the
        settings that choose it."""
        if port == 0:
            return 0
        metrics_app = make_wsgi_app(self.registry)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if environ.get("PATH_INFO") in ("/healthz", "/livez") and health is not None:
                alive, details = health()
                body = json.dumps(details, sort_keys=True).encode()
                status = "200 OK" if alive else "503 Service Unavailable"
                start_response(status, [("Content-Type", "application/json"), ("Cache-Control", "no-store")])
                return [body]
            return metrics_app(environ, start_response)  # type: ignore[no-any-return]

        try:
            server = make_server(host, port, app, ThreadingWSGIServer, handler_class=_SilentHandler)
        except OSError as exc:
            raise MetricsPortError(
                f"cannot serve metrics on {host}:{port}: {exc.strerror or exc} "
                "(the port comes from WV_METRICS_PORT or edge.yaml metrics.port, the address from "
                "WV_METRICS_HOST or metrics.host: choose a free port, or 0 to disable the endpoint)"
            ) from None
        self._server = server
        threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
        return int(server.server_port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _Callback(Collector):
    def __init__(self, read: Callable[[], Iterable[Metric]]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        return self._read()


def counter(name: str, doc: str, labels: list[str], values: Mapping[Any, float]) -> Metric:
    family = CounterMetricFamily(name, doc, labels=labels)
    for key, value in values.items():
        family.add_metric(list(key), value)
    return family


def gauge(
    name: str,
    doc: str,
    value: float | None = None,
    labels: list[str] | None = None,
    values: Mapping[Any, float] | None = None,
) -> Metric:
    family = GaugeMetricFamily(name, doc, value=value, labels=labels)
    for key, v in (values or {}).items():
        family.add_metric(list(key), v)
    return family
