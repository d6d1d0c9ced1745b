"""The edge service: wires capture, batching, engines, tracking, decisions, outbox and transport.

Threads: one reader per camera, one inference loop, the outbox relay, the model manager, and the
Prometheus server. `run()` blocks until SIGTERM/SIGINT (or until every finite source ended), then
shuts down in dependency order: stop the cameras, process what is queued, end every track (its
decision is written), give the relay a bounded time to empty the outbox, close RocksDB. Whatever
the centre has not acknowledged by then stays in the outbox and is replayed on the next start.
"""

from __future__ import annotations

import logging
import signal
import threading
import uuid
from collections.abc import Iterable

import numpy as np
from prometheus_client.core import Metric

from edge.backends.base import EngineSpec
from edge.batching.controller import BatchController
from edge.batching.straggler import StragglerRunner
from edge.capture.queues import FrameHub
from edge.capture.reader import CameraReader
from edge.config import CameraConfig, EdgeConfig, ZoneSpec
from edge.decisions.decider import Decider
from edge.decisions.references import SkuReferences
from edge.decisions.zones import Zone, ZoneMap
from edge.hotswap.manager import ModelManager
from edge.metrics import EdgeMetrics, counter, gauge
from edge.outbox.relay import Relay
from edge.outbox.store import Outbox
from edge.pipeline import CameraRuntime, Pipeline, decode_for
from edge.publish.base import Transport
from edge.retry import Backoff
from edge.sources.base import FrameSource
from edge.sources.factory import open_source
from edge.sources.simulated import SyntheticSource
from edge.tracking.iou import IouTracker
from foundation.resilience import CircuitBreaker
from simulator.identity import SimulatorIdentity

log = logging.getLogger(__name__)

LATEST_CAPACITY = 1


def make_transport(config: EdgeConfig, grpc_token: str | None = None) -> Transport:
    t = config.transport
    if t.kind == "grpc":
        from edge.publish.grpc import GrpcTransport

        return GrpcTransport(t.grpc_address, grpc_token, t.grpc_tls_ca, t.grpc_tls_cert, t.grpc_tls_key)
    from edge.publish.kafka import KafkaTransport

    return KafkaTransport(t.kafka_bootstrap, config.facility, t.topic_prefix, t.timeout_s)


def camera_zones(camera: CameraConfig, source: FrameSource) -> list[ZoneSpec]:
    """Configured zones, else for a synthetic source the simulator's lanes (full-width bands)."""
    if camera.zones or not isinstance(source, SyntheticSource):
        return camera.zones
    from simulator.scene import Layout

    layout = Layout.from_config(source.config)
    return [
        ZoneSpec(name=name, rect=(0, top, layout.width, bottom))
        for i, name in enumerate(layout.zones)
        for top, bottom in [layout.band(i)]
    ]


class EdgeService:
    def __init__(
        self, config: EdgeConfig, grpc_token: str | None = None, transport: Transport | None = None
    ) -> None:
        self.config = config
        self._grpc_token = grpc_token
        self._transport = transport
        self.stop_event = threading.Event()
        self.metrics = EdgeMetrics()
        self.metrics_port = 0
        self._pipeline_thread: threading.Thread | None = None
        self._started = False
        self._stopped = False
        self.outbox_left = 0
        """Unacknowledged events left in the outbox at shutdown (replayed on the next start)."""

    # -- start ------------------------------------------------------------------------------

    def start(self) -> None:
        cfg = self.config
        base = cfg.state_dir / "edge" / cfg.facility
        self.outbox = Outbox(
            cfg.outbox.path,
            cfg.outbox.ttl_hours * 3600,
            int(cfg.outbox.quota_mb * 2**20),
            cfg.outbox.sync,
            memtable_bytes=int(cfg.outbox.memtable_mb * 2**20),
        )
        if len(self.outbox):
            log.info("outbox holds %d unacknowledged events from a previous run; replaying", len(self.outbox))
        self.transport = self._transport or make_transport(cfg, self._grpc_token)
        t = cfg.transport
        self.relay = Relay(
            self.outbox,
            self.transport,
            batch_events=t.batch_events,
            timeout_s=t.timeout_s,
            breaker=CircuitBreaker(t.breaker_failures, t.breaker_reset_s),
            backoff=Backoff(t.backoff_base_s, t.backoff_cap_s),
            on_delivered=lambda events, seconds: self.metrics.delivery.observe(seconds),
        )
        e = cfg.engine
        self.manager = ModelManager(
            EngineSpec(e.name, e.precision, e.device, e.threads, e.spin),
            cfg.model,
            cfg.hotswap,
            decode_for,
            status_path=base / "model_status.json",
        )
        self.relay.start()  # replay starts at once, before the first frame
        try:
            self.manager.start()
        except Exception:
            self.relay.stop()
            self.transport.close()
            self.outbox.close()
            raise
        self.references = SkuReferences(
            cfg.redis_url, cfg.decisions.reference_capacity, cfg.decisions.reference_min_count
        )
        self.hub = FrameHub()
        self.cameras = {c.id: self._camera(c) for c in cfg.cameras}
        b = cfg.budgets
        self.controller = BatchController(b.latency_ms, b.inference_deadline_ms, b.max_batch)
        self.runner = StragglerRunner(self.manager, b.inference_deadline_ms, b.fallback)
        self.pipeline = Pipeline(
            cfg.facility,
            self.cameras,
            self.hub,
            self.manager,
            self.runner,
            self.controller,
            self.outbox,
            self.relay,
            self.metrics,
            b.latency_ms,
        )
        self.metrics.add_collector(self._collect)
        self.metrics_port = self.metrics.serve(cfg.metrics.host, cfg.metrics.port)
        for cam in self.cameras.values():
            cam.reader.start()
        self._pipeline_thread = threading.Thread(
            target=self.pipeline.run, args=(self.stop_event,), name="inference"
        )
        self._pipeline_thread.start()
        self._started = True
        log.info(
            "edge service started",
            extra={
                "facility": cfg.facility,
                "cameras": list(self.cameras),
                "model": self.manager.active.version if self.manager.active else None,
                "engine": e.name,
                "precision": e.precision,
                "metrics_port": self.metrics_port,
            },
        )

    def _camera(self, camera: CameraConfig) -> CameraRuntime:
        source = open_source(camera.source, camera.id)
        zones = ZoneMap([Zone(z.name, _polygon(z)) for z in camera_zones(camera, source)])
        capacity = camera.queue_size if camera.policy == "every" else min(camera.queue_size, LATEST_CAPACITY)
        queue = self.hub.add(camera.id, camera.policy, capacity)
        reader = CameraReader(
            source, queue, Backoff(camera.reconnect.base_s, camera.reconnect.cap_s), camera.restart_at_end
        )
        run = uuid.uuid4().hex[:6]  # track ids stay unique across restarts
        tracker = IouTracker(
            f"{self.config.facility}-{camera.id}-{run}",
            self.config.tracking.iou_threshold,
            self.config.tracking.min_hits,
            self.config.tracking.max_age,
        )
        identity = SimulatorIdentity() if self.config.decisions.simulator_truth else None
        decider = Decider(self.config.decisions, zones, camera.routes, self.references, identity=identity)
        return CameraRuntime(camera.id, reader, tracker, decider)

    # -- run and stop -----------------------------------------------------------------------

    def run(self, install_signals: bool = True, drain_timeout_s: float = 10.0) -> None:
        """Start, serve until a signal or the end of every source, then shut down cleanly."""
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda signum, frame: self.request_stop())
        self.start()
        try:
            while (
                not self.stop_event.is_set()
                and self._pipeline_thread is not None
                and self._pipeline_thread.is_alive()
            ):
                self.stop_event.wait(0.2)
        finally:
            self.shutdown(drain_timeout_s)

    def request_stop(self) -> None:
        self.stop_event.set()

    def wait_finished(self, timeout: float) -> bool:
        """Block until the inference loop ended (finite sources) or `timeout`; True if it ended."""
        if self._pipeline_thread is None:
            return True
        self._pipeline_thread.join(timeout)
        return not self._pipeline_thread.is_alive()

    def shutdown(self, drain_timeout_s: float = 10.0) -> None:
        if not self._started or self._stopped:
            return
        self._stopped = True
        log.info("edge service stopping")
        for cam in self.cameras.values():
            cam.reader.stop()
        for cam in self.cameras.values():  # the loop still runs, so `every` readers can hand over
            cam.reader.join(timeout=5)
        self.hub.close()  # releases a reader still blocked if the loop is stuck
        self.stop_event.set()
        if self._pipeline_thread is not None:
            self._pipeline_thread.join()
        delivered = self.relay.drain(drain_timeout_s)
        self.relay.stop()
        self.transport.close()
        left = self.outbox_left = len(self.outbox)
        self.outbox.flush()
        self.outbox.close()
        self.runner.close()
        self.manager.stop()
        self.references.close()
        self.metrics.close()
        log.info(
            "edge service stopped",
            extra={"outbox_left": left, "outbox_flushed": delivered, **self.pipeline.counters},
        )

    # -- metrics ----------------------------------------------------------------------------

    def _collect(self) -> Iterable[Metric]:
        p, hub, relay, ob, mgr, run = (
            self.pipeline,
            self.hub,
            self.relay,
            self.outbox,
            self.manager,
            self.runner,
        )
        yield counter(
            "wv_edge_frames",
            "Frames processed.",
            ["camera"],
            {(k,): v for k, v in p.frames_by_camera.items()},
        )
        yield counter(
            "wv_edge_frames_dropped",
            "Frames dropped, by camera and reason.",
            ["camera", "reason"],
            dict(hub.drops),
        )
        yield gauge("wv_edge_queue_depth", "Frames waiting for inference.", hub.depth())
        yield gauge("wv_edge_batch_limit", "Current adaptive batch-size limit.", self.controller.limit)
        yield gauge(
            "wv_edge_batch_wait_seconds", "Current adaptive batch fill wait.", self.controller.wait_ms / 1000
        )
        readers = {c.camera_id: c.reader.counters for c in self.cameras.values()}
        for name, doc, key in (
            ("wv_edge_frames_captured", "Frames decoded (each later processed or dropped).", "frames"),
            ("wv_edge_source_reconnects", "Source reconnect attempts.", "reconnects"),
            ("wv_edge_source_errors", "Source open/read failures.", "read_errors"),
        ):
            yield counter(name, doc, ["camera"], {(k,): v[key] for k, v in readers.items()})
        kinds = {("decision",): p.counters["events_decision"], ("detection",): p.counters["events_detection"]}
        yield counter("wv_edge_events", "Events written to the outbox.", ["kind"], kinds)
        yield counter("wv_edge_anomalies", "Anomaly flags raised.", [], {(): p.counters["anomalies"]})
        yield gauge("wv_edge_outbox_events", "Unacknowledged events in the outbox.", len(ob))
        yield gauge("wv_edge_outbox_bytes", "Bytes of unacknowledged events.", ob.size_bytes)
        yield gauge("wv_edge_outbox_oldest_age_seconds", "Age of the oldest outbox event.", ob.oldest_age_s())
        yield counter(
            "wv_edge_outbox_removed",
            "Events removed from the outbox, by reason.",
            ["reason"],
            {(r,): ob.counters[r] for r in ("acked", "expired", "dropped_quota", "dropped_quota_anomaly")},
        )
        yield counter(
            "wv_edge_published_events",
            "Events acknowledged by the centre.",
            [],
            {(): relay.counters["delivered"]},
        )
        yield counter(
            "wv_edge_publish_failures", "Failed publish attempts.", [], {(): relay.counters["failures"]}
        )
        yield counter(
            "wv_edge_transport_connects", "Transport (re)connections.", [], {(): self.transport.connects}
        )
        yield gauge(
            "wv_edge_circuit_state",
            "Publisher circuit breaker state (1 = current).",
            labels=["state"],
            values={(s,): float(relay.breaker.state.value == s) for s in ("closed", "open", "half_open")},
        )
        yield counter(
            "wv_edge_inference",
            "Inference outcomes per batch.",
            ["outcome"],
            {(k,): v for k, v in run.counters.items()},
        )
        batches = run.counters["batches"]
        yield gauge(
            "wv_edge_fallback_rate",
            "Share of batches answered by the fallback model.",
            run.counters["fallback_emitted"] / batches if batches else 0.0,
        )
        roles = {
            "active": mgr.active,
            "fallback": mgr.fallback,
            "candidate": mgr.candidate,
            "previous": mgr.previous,
        }
        yield gauge(
            "wv_edge_model_info",
            "Loaded models (1 per role).",
            labels=["role", "version", "engine", "precision"],
            values={
                (r, m.version, m.engine.name, m.engine.precision): 1.0
                for r, m in roles.items()
                if m is not None
            },
        )
        yield counter("wv_edge_model_swaps", "Model promotions.", [], {(): mgr.swaps})
        yield counter("wv_edge_model_rollbacks", "Automatic rollbacks.", [], {(): mgr.rollbacks})
        st = self.references.stats
        yield counter("wv_edge_sku_reference_lookups", "SKU reference lookups.", [], {(): st.lookups})
        yield counter(
            "wv_edge_sku_reference_hits", "SKU reference lookups that found one.", [], {(): st.hits}
        )
        yield gauge("wv_edge_sku_reference_hit_rate", "SKU reference cache hit rate.", st.hit_rate)
        yield counter(
            "wv_edge_sku_reference_redis_errors",
            "Redis failures of the reference cache.",
            [],
            {(): st.redis_errors},
        )


def _polygon(zone: ZoneSpec) -> np.ndarray:

    return np.asarray(zone.points(), dtype=np.float32)
