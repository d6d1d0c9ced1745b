"""Prometheus metrics of the edge service, on its own registry (several services per process in tests).

Latency histograms are observed on the hot path; everything the components already count
(drops, reconnects, outbox state, fallbacks, model lifecycle) is read at scrape time by a
collector, so the components hold plain counters and never depend on Prometheus.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

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

    def observe_stages(self, timings_ms: dict[str, float]) -> None:
        for stage, ms in timings_ms.items():
            self.stage.labels(stage.removesuffix("_ms")).observe(ms / 1000.0)

    def add_collector(self, read: Callable[[], Iterable[Metric]]) -> None:
        self.registry.register(_Callback(read))

    def serve(self, host: str, port: int) -> int:
        """Expose /metrics on host:port (0 = disabled); returns the bound port."""
        if port == 0:
            return 0
        self._server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return int(self._server.server_port)

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
