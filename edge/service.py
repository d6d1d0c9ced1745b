"""The edge service: wires capture, batching, engines, tracking, decisions, outbox and transport.

Threads: one reader per camera, one inference loop, the outbox relay, the model manager, the
Prometheus server (``/metrics``, ``/healthz``) and the watchdog. `run()` blocks until
SIGTERM/SIGINT (or until every finite source ended, or the watchdog found a stalled thread), then
shuts down in dependency order: stop the cameras, process what is queued, end every track (its
decision is written), give the relay a bounded time to empty the outbox, close RocksDB. Whatever
the centre has not acknowledged by then stays in the outbox and is replayed on the next start.

Every step of the stop is bounded by ``shutdown.timeout_s`` from the moment it was asked for; a
step that overruns it (a stuck engine, a hung transport) is abandoned, and the watchdog thread
ends the process with :data:`~edge.watchdog.EXIT_SHUTDOWN_DEADLINE` if the stop as a whole has
not finished by the deadline. The outbox needs no flush for that: each write is in RocksDB's log.

Log output goes through :class:`~edge.logsafe.NonBlockingLogs`: the hang of issue 24 was an edge
whose stderr was a pipe nobody read any more; once it was full, the thread writing a log line
blocked in ``write()`` holding the handler's lock, the inference loop waited for that lock at its
next warning (the cameras went dark) and, on SIGTERM, so did the stop path at *edge service
stopping*: no line after *edge service started*, SIGTERM and SIGINT without effect, every thread in
a futex wait, the metrics endpoint (which logs nothing) still answering. Signals: the handler only
records the signal (no lock, no logging) and the watchdog thread acts on it; a handler that set a
``threading.Event`` could deadlock the main thread holding that event's lock inside ``wait()``.
"""

from __future__ import annotations

import faulthandler
import functools
import logging
import os
import signal
import sys
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client.core import Metric

from edge.backends.base import EngineSpec
from edge.batching.controller import BatchController
from edge.batching.interval import IntervalController
from edge.batching.straggler import StragglerRunner
from edge.camera_registry import RegistryClient, RegistryWatcher
from edge.capture.reader import CameraReader
from edge.capture.ring import PageLocker
from edge.capture.workers import DecodePool, RemoteReader
from edge.config import CameraConfig, EdgeConfig, EngineConfig, ZoneSpec
from edge.decisions.decider import Decider
from edge.decisions.references import SkuReferences
from edge.decisions.zones import Zone, ZoneMap
from edge.hotswap.manager import ModelManager
from edge.logsafe import NonBlockingLogs
from edge.metrics import EdgeMetrics, counter, gauge
from edge.outbox.relay import Relay
from edge.outbox.store import Outbox
from edge.pipeline import CameraRuntime, Pipeline, decode_for
from edge.publish.base import Transport
from edge.retry import Backoff
from edge.sampling import sampling_hub
from edge.sources.base import FrameSource
from edge.sources.factory import open_source
from edge.sources.simulated import SyntheticSource
from edge.tracking.iou import IouTracker
from edge.watchdog import EXIT_OK, EXIT_SHUTDOWN_DEADLINE, EXIT_STALLED, Watchdog
from foundation.resilience import CircuitBreaker
from simulator.identity import SimulatorIdentity

log = logging.getLogger(__name__)

LATEST_CAPACITY = 1


def make_transport(config: EdgeConfig, grpc_token: str | None = None) -> Transport:
    t = config.transport
    if t.kind == "grpc":
        from edge.publish.grpc import GrpcTransport

        return GrpcTransport(
            t.grpc_address,
            grpc_token,
            t.grpc_tls_ca,
            t.grpc_tls_cert,
            t.grpc_tls_key,
            stream_deadline_s=t.grpc_stream_deadline_s,
        )
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


def frame_locker(engine: EngineConfig) -> PageLocker | None:
    """What page-locks the decode workers' frame slots for the engine's device (`engine.zero_copy`):
    CUDA's host registration for the torch engine on a GPU, else nothing (frames are copied)."""
    if engine.zero_copy and engine.name == "torch" and engine.device.startswith("cuda"):
        from edge.backends.torch_device import cuda_host_pins

        return cuda_host_pins()
    return None


RETIRE_WAIT_S = 10.0
"""A removed camera's reader gets this long to stop (a read stuck longer is abandoned)."""
CONFIG_POLL_S = 2.0
"""How often the configuration file is checked for camera changes."""
WATCH_INTERVAL_S = 0.1
"""How often the watchdog thread looks at signals, heartbeats and the stop deadline."""
BACKSTOP_MARGIN_S = 5.0
"""The native backstop fires this long after the watchdog itself should have acted."""
EXIT_GRACE_S = 10.0
"""After the stop, the interpreter's own exit gets this long before the backstop ends it."""


def _hard_exit(code: int) -> None:
    """End the process now, whatever its threads are doing (the outbox is already durable).

    No stream is flushed: an output nobody reads would block the flush, and the exit with it."""
    os._exit(code)


class EdgeService:
    def __init__(
        self,
        config: EdgeConfig,
        grpc_token: str | None = None,
        transport: Transport | None = None,
        hard_exit: Callable[[int], None] = _hard_exit,
        owns_process: bool = False,
        reload: Callable[[], EdgeConfig] | None = None,
        config_file: Path | None = None,
    ) -> None:
        self.config = config
        self._reload = reload
        self._config_file = config_file
        """Watched for camera changes (`reload` reads it), applied live: see `apply_cameras`."""
        self._camera_configs = list(config.cameras)
        self._cameras_lock = threading.Lock()
        self.retired_counters: dict[str, Counter[str]] = {}
        """Reader counts of cameras removed or re-pointed while running (kept in the metrics)."""
        self._counts_lock = threading.Lock()
        """Held while a camera moves from `cameras` to `retired_counters`: a scrape sees its counts once."""
        self._grpc_token = grpc_token
        self._transport = transport
        self._hard_exit = hard_exit
        """Ends the process when a stop overruns its deadline (tests pass a recorder)."""
        self.stop_event = threading.Event()
        self.metrics = EdgeMetrics()
        self.metrics_port = 0
        self.watchdog = Watchdog(config.watchdog.stall_s)
        self._pipeline_thread: threading.Thread | None = None
        self._watch_thread: threading.Thread | None = None
        self._started = False
        self._stopped = False
        self._finished = threading.Event()
        self._signals: list[int] = []
        """Signal numbers received; appended by the handler (no lock), acted on by the watchdog."""
        self._stop_asked_at: float | None = None
        self.stop_reason = ""
        self.stalls: list[str] = []
        """Components the watchdog found stalled (then the exit code is EXIT_STALLED)."""
        self.abandoned: list[str] = []
        """Threads still running when the stop gave up on them (then EXIT_SHUTDOWN_DEADLINE)."""
        self.outbox_left = 0
        """Unacknowledged events left in the outbox at shutdown (replayed on the next start)."""
        self.outbox_flushed = False
        self._real_process = owns_process
        """`wv edge run` (the process is the edge's alone): `run()` moves log output off the working
        threads and arms the native backstop, which outlives `run()` to bound the interpreter's exit."""
        self._logs = NonBlockingLogs()
        self.output_stuck = False
        """The log output was not being read at the end: exit without flushing stdout/stderr."""
        self._dumps = config.state_dir / "edge" / config.facility / "threads.txt"
        """Where the watchdog and the backstop write every thread's stack (not stderr: it may block)."""
        self._dump_file: Any = None

    @property
    def exit_code(self) -> int:
        """0 after a clean stop; EXIT_STALLED after a watchdog stop; EXIT_SHUTDOWN_DEADLINE when
        a thread had to be abandoned."""
        if self.stalls:
            return EXIT_STALLED
        if self.abandoned:
            return EXIT_SHUTDOWN_DEADLINE
        return EXIT_OK

    # -- start ------------------------------------------------------------------------------

    def start(self) -> None:
        """Build and start every component; on failure, release what was already started."""
        cfg = self.config
        # The endpoint first: a port in use fails at once, before the outbox or a model is opened.
        self.metrics_port = self.metrics.serve(cfg.metrics.host, cfg.metrics.port, self.health)
        try:
            self._start()
        except BaseException:
            self.metrics.close()
            raise

    def _start(self) -> None:
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
            on_delivered=lambda count, seconds: self.metrics.delivery.observe(seconds),
        )
        self.registry = (
            RegistryWatcher(
                cfg.facility,
                RegistryClient(cfg, self._grpc_token),
                cfg.cameras,
                self.apply_cameras,
                cfg.camera_registry.poll_s,
            )
            if cfg.cameras_from == "registry"
            else None
        )
        self._camera_configs = self.registry.initial() if self.registry else list(cfg.cameras)
        e = cfg.engine
        self.manager = ModelManager(
            EngineSpec(
                e.name, e.precision, e.device, e.threads, e.spin, e.cuda_graphs, cfg.budgets.max_batch
            ),
            cfg.model,
            cfg.hotswap,
            decode_for,
            status_path=base / "model_status.json",
            scope=(cfg.facility, [c.id for c in self._camera_configs]),  # a canary naming them applies here
        )
        self.relay.start()  # replay starts at once, before the first frame
        try:
            self.manager.start()
            self.references = SkuReferences(
                cfg.redis_url, cfg.decisions.reference_capacity, cfg.decisions.reference_min_count
            )
            self.hub = sampling_hub(cfg.facility)  # a FrameHub; samples frames when WV_FRAME_SAMPLING is on
            self.decoders = (
                DecodePool(
                    self.hub, cfg.capture.workers, int(cfg.capture.max_frame_mb * 2**20), frame_locker(e)
                )
                if cfg.capture.workers
                else None
            )
            self.cameras = {c.id: self._camera(c) for c in self._camera_configs}
        except BaseException:
            decoders: DecodePool | None = getattr(self, "decoders", None)
            if decoders is not None:
                decoders.stop()
            self.relay.stop()
            self.transport.close()
            self.outbox.close()
            self.manager.stop()
            raise
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
            IntervalController(cfg.capture.max_interval) if cfg.capture.max_interval > 1 else None,
            e.post_thread,
        )
        self.metrics.add_collector(self._collect)
        self.metrics.add_collector(self.manager.collect)
        if self.registry is not None:
            self.metrics.add_collector(self.registry.collect)
        self.watchdog.watch(
            self.pipeline.heartbeat,
            self.relay.heartbeat,
            *(c.reader.heartbeat for c in self.cameras.values()),
        )
        for cam in self.cameras.values():
            cam.reader.start()
        self._pipeline_thread = threading.Thread(
            target=self.pipeline.run, args=(self.stop_event,), name="inference"
        )
        self._pipeline_thread.start()
        if self.registry is not None:  # the file's cameras then only give settings: read at start
            threading.Thread(
                target=self.registry.run, args=(self.stop_event,), name="camera-registry", daemon=True
            ).start()
        elif self._config_file is not None and self._reload is not None:
            threading.Thread(target=self._watch_config, name="camera-config", daemon=True).start()
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
                "stall_s": cfg.watchdog.stall_s,
                "shutdown_timeout_s": cfg.shutdown.timeout_s,
            },
        )

    def _camera(self, camera: CameraConfig) -> CameraRuntime:
        source = open_source(camera.source, camera.id)  # built, not connected
        zones = ZoneMap([Zone(z.name, _polygon(z)) for z in camera_zones(camera, source)])
        reader: CameraReader | RemoteReader
        if self.decoders is not None:
            reader = self.decoders.reader(camera)
        else:
            capacity = (
                camera.queue_size if camera.policy == "every" else min(camera.queue_size, LATEST_CAPACITY)
            )
            reader = CameraReader(
                source,
                self.hub.add(camera.id, camera.policy, capacity),
                Backoff(camera.reconnect.base_s, camera.reconnect.cap_s),
                camera.restart_at_end,
                camera.interval,
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
        return CameraRuntime(camera.id, reader, tracker, decider, camera.interval)

    # -- cameras changed while running ------------------------------------------------------

    def apply_cameras(self, cameras: list[CameraConfig]) -> dict[str, list[str]]:
        """Add, remove and re-point cameras without a restart (from any thread).

        A removed camera's reader stops; frames it already queued are processed, its live tracks
        end and their decisions are written, then it is forgotten; its counts stay in the metrics.
        A changed camera (new source, policy, zones, ...) is removed and added again under its id."""
        if not cameras and self.config.cameras_from == "file":
            raise ValueError("an edge needs at least one camera")
        with self._cameras_lock:
            current = {c.id: c for c in self._camera_configs}
            wanted = {c.id: c for c in cameras}
            added = [i for i in wanted if i not in current]
            removed = [i for i in current if i not in wanted]
            changed = [i for i in wanted if i in current and wanted[i] != current[i]]
            for camera_id in removed + changed:
                self._retire(camera_id, wanted.get(camera_id))
            for camera_id in added:
                self.pipeline.request(functools.partial(self._attach, wanted[camera_id]))
            self._camera_configs = list(cameras)
        if added or removed or changed:
            log.info("cameras changed", extra={"added": added, "removed": removed, "changed": changed})
        return {"added": added, "removed": removed, "changed": changed}

    def _attach(self, camera: CameraConfig) -> bool:
        """On the inference thread: build, register and start one camera."""
        runtime = self._camera(camera)
        self.cameras[camera.id] = runtime
        self.watchdog.watch(runtime.reader.heartbeat)
        runtime.reader.start()
        return True

    def _retire(self, camera_id: str, replacement: CameraConfig | None) -> None:
        runtime = self.cameras[camera_id]
        runtime.reader.stop()
        give_up = time.monotonic() + RETIRE_WAIT_S

        def done() -> bool:  # on the inference thread, each turn until the reader has stopped
            queue = self.hub.queues.get(camera_id)
            stopped = runtime.reader.finished.is_set() or time.monotonic() > give_up
            if not stopped or (queue is not None and queue.items and time.monotonic() <= give_up):
                return False
            if runtime.reader.alive:
                log.warning(
                    "camera %s: reader still in a read after %.0f s; abandoned", camera_id, RETIRE_WAIT_S
                )
            with self._counts_lock:
                self.retired_counters[camera_id] = self.retired_counters.get(camera_id, Counter()) + Counter(
                    runtime.reader.counters
                )
                self.pipeline.retire(camera_id)
            self.hub.remove(camera_id)
            self.watchdog.unwatch(runtime.reader.heartbeat)
            if self.decoders is not None and isinstance(runtime.reader, RemoteReader):
                self.decoders.detach(runtime.reader)
            if replacement is not None:
                self._attach(replacement)
            return True

        self.pipeline.request(done)

    def _watch_config(self) -> None:
        """Poll the configuration file; camera changes apply live, other changes need a restart."""
        assert self._config_file is not None and self._reload is not None
        seen = _mtime(self._config_file)
        while not self.stop_event.wait(CONFIG_POLL_S):
            mtime = _mtime(self._config_file)
            if mtime == seen:
                continue
            seen = mtime
            try:
                fresh = self._reload()
            except Exception as exc:  # a half-written or invalid file: keep running as configured
                log.error("edge configuration changed but is not valid; cameras unchanged: %s", exc)
                continue
            self.apply_cameras(fresh.cameras)
            others = {k for k in EdgeConfig.model_fields if k != "cameras"}
            if fresh.model_dump(include=others) != self.config.model_dump(include=others):
                log.warning("edge configuration changed beyond cameras: those changes need a restart")

    # -- run and stop -----------------------------------------------------------------------

    def run(self, install_signals: bool = True, drain_timeout_s: float = 10.0) -> None:
        """Start, serve until a signal, the end of every source or a stall, then shut down.

        The stop takes at most ``shutdown.timeout_s`` from the signal (or the stall); the relay
        gets at most `drain_timeout_s` of it to empty the outbox."""
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self._on_signal)
        if self._real_process:
            self._logs.install()
            self._dumps.parent.mkdir(parents=True, exist_ok=True)
            self._dump_file = self._dumps.open("w")
        self._watch_thread = threading.Thread(target=self._watch, name="watchdog", daemon=True)
        self._watch_thread.start()
        try:
            self.start()
            while (
                not self.stop_event.is_set()
                and self._pipeline_thread is not None
                and self._pipeline_thread.is_alive()
            ):
                self.stop_event.wait(0.2)  # safe: the signal handler never touches this event
        finally:
            try:
                self.shutdown(drain_timeout_s)
            finally:
                self._finished.set()
                if self._real_process:
                    self.output_stuck = not self._logs.uninstall(min(2.0, self._remaining()))

    def _on_signal(self, signum: int, frame: object) -> None:
        """Record the signal and return: no lock, no logging (either can deadlock a handler)."""
        self._signals.append(signum)

    def request_stop(self, reason: str = "requested") -> None:
        """Ask for a stop (from any thread but a signal handler); the deadline starts now."""
        if self._stop_asked_at is None:
            self._stop_asked_at = time.monotonic()
            self.stop_reason = reason
        self.stop_event.set()

    def _deadline(self) -> float:
        asked = self._stop_asked_at if self._stop_asked_at is not None else time.monotonic()
        return asked + self.config.shutdown.timeout_s

    def _remaining(self) -> float:
        return max(0.0, self._deadline() - time.monotonic())

    def _watch(self) -> None:
        """The watchdog thread: signals → stop, stalls → stop with EXIT_STALLED, and a stop that
        overruns its deadline (or a second signal) → the process ends at once.

        It needs the interpreter lock to run at all, so it keeps re-arming a native backstop
        (``faulthandler.dump_traceback_later``, a C thread): should a native call ever hold that
        lock for good, every thread's stack is dumped and the process exits with code 1 once
        2 × ``stall_s`` (or the stop deadline) has passed without a re-arm."""
        backstop = self._real_process  # never inside tests
        try:
            self._watch_loop(backstop)
        finally:
            if backstop:  # stays armed: the interpreter's exit gets EXIT_GRACE_S, then it ends
                faulthandler.dump_traceback_later(EXIT_GRACE_S, exit=True, file=self._dump_file)

    def _arm_backstop(self) -> None:
        if self._stop_asked_at is not None:
            timeout = self._remaining() + BACKSTOP_MARGIN_S
        else:
            timeout = 2 * self.config.watchdog.stall_s + BACKSTOP_MARGIN_S
        faulthandler.dump_traceback_later(timeout, exit=True, file=self._dump_file)

    def _watch_loop(self, backstop: bool) -> None:
        seen, armed = 0, 0.0
        while not self._finished.wait(WATCH_INTERVAL_S):
            if backstop and time.monotonic() - armed >= 1.0:
                self._arm_backstop()
                armed = time.monotonic()
            signals = list(self._signals)
            if len(signals) > seen:
                seen = len(signals)
                name = signal.Signals(signals[-1]).name
                if self._stop_asked_at is not None and seen > 1:
                    self._force_exit(f"second {name} while stopping")
                    return
                log.info("%s received: stopping within %.0f s", name, self.config.shutdown.timeout_s)
                self.request_stop(name)
            if self._started and not self.stop_event.is_set():
                stalls = self.watchdog.stalls()
                if stalls:
                    self.stalls = [s.component for s in stalls]
                    for stall in stalls:
                        log.error(
                            "watchdog: %s made no progress for %.1f s while it had work; stopping "
                            "(exit code %d) so the supervisor restarts the edge",
                            stall.component,
                            stall.seconds,
                            EXIT_STALLED,
                        )
                    self._log_stacks(set(self.stalls))
                    self.request_stop("stalled: " + ", ".join(self.stalls))
            if self._stop_asked_at is not None and time.monotonic() > self._deadline():
                self._force_exit(f"stop not finished within {self.config.shutdown.timeout_s:.0f} s")
                return

    def _force_exit(self, why: str) -> None:
        left = len(self.outbox) if hasattr(self, "outbox") else 0
        code = EXIT_STALLED if self.stalls else EXIT_SHUTDOWN_DEADLINE
        log.error(
            "%s: exiting now with code %d; %d unacknowledged events stay in the outbox for the next start",
            why,
            code,
            left,
        )
        if self._dump_file is not None:  # what was stuck, for the post-mortem
            faulthandler.dump_traceback(self._dump_file, all_threads=True)
            log.error("every thread's stack is in %s", self._dumps)
        if self._real_process:
            self._logs.drain(0.5)  # the lines above, unless nobody reads the output
        self._hard_exit(code)

    def _log_stacks(self, components: set[str]) -> None:
        """The current stack of each stalled thread (named like its heartbeat), of the inference
        loop's batching thread and of the engine worker it waits on, in the log."""
        frames = sys._current_frames()
        for thread in threading.enumerate():
            if thread.name in components or (
                "inference" in components and thread.name.startswith(("primary", "inference-"))
            ):
                frame = frames.get(thread.ident or -1)
                if frame is not None:
                    stack = "".join(traceback.format_stack(frame))
                    log.error("watchdog: stack of thread %s:\n%s", thread.name, stack)

    def health(self) -> tuple[bool, dict[str, Any]]:
        """``/healthz``: alive unless a component stalled or the edge is stopping."""
        state = self.watchdog.state()
        stalled = [name for name, s in state.items() if s["stalled"]] or self.stalls
        status = (
            "stalled"
            if stalled
            else "stopping"
            if self.stop_event.is_set()
            else ("ok" if self._started else "starting")
        )
        return status in ("ok", "starting"), {"status": status, "stalled": stalled, "components": state}

    def wait_finished(self, timeout: float) -> bool:
        """Block until the inference loop ended (finite sources) or `timeout`; True if it ended."""
        if self._pipeline_thread is None:
            return True
        self._pipeline_thread.join(timeout)
        return not self._pipeline_thread.is_alive()

    def shutdown(self, drain_timeout_s: float = 10.0) -> None:
        """Stop every component in dependency order, each step bounded by the stop deadline."""
        if not self._started or self._stopped:
            return
        self._stopped = True
        self.request_stop(self.stop_reason or "sources ended")
        log.info("edge service stopping", extra={"reason": self.stop_reason, "within_s": self._remaining()})
        reserve = min(3.0, self.config.shutdown.timeout_s * 0.25)
        """Kept back from the waits below for closing the outbox and the rest."""
        for cam in list(self.cameras.values()):
            cam.reader.stop()
        for cam in list(self.cameras.values()):  # the loop still runs, so `every` readers can hand over
            cam.reader.join(timeout=min(5.0, max(0.0, self._remaining() - reserve)))
        self.hub.close()  # releases a reader still blocked if the loop is stuck
        self.stop_event.set()
        if self._pipeline_thread is not None:
            self._pipeline_thread.join(max(0.0, self._remaining() - reserve))
        pipeline_done = self._pipeline_thread is None or not self._pipeline_thread.is_alive()
        if not pipeline_done:
            self.abandoned.append("inference")
            log.error("inference loop did not finish in time; the frames it holds are not processed")
        delivered = self.relay.drain(max(0.0, min(drain_timeout_s, self._remaining() - reserve)))
        if not self.relay.stop(max(0.0, min(self.relay.timeout_s + 5, self._remaining() - reserve))):
            self.abandoned.append("outbox-relay")
            log.error("outbox relay did not stop in time (a send still running)")
        self.metrics.close()
        self.transport.close()
        left = self.outbox_left = len(self.outbox)
        if pipeline_done and "outbox-relay" not in self.abandoned:
            self.outbox.flush()
            self.outbox.close()
            self.outbox_flushed = True
        self.runner.close(min(2.0, max(0.0, self._remaining() - reserve)))
        if self.decoders is not None:
            self.decoders.stop(max(0.5, min(5.0, self._remaining())))
        if pipeline_done:  # else an engine may still be inside a call: closing it under that call could crash
            self.manager.stop()
        self.references.close()
        self.abandoned += [f"camera-{c.camera_id}" for c in list(self.cameras.values()) if c.reader.alive]
        log.info(
            "edge service stopped",
            extra={
                "reason": self.stop_reason,
                "outbox_left": left,
                "outbox_flushed": delivered,
                "abandoned": self.abandoned,
                **self.pipeline.counters,
            },
        )

    def summary(self) -> str:
        """The exit summary line: frames read, processed and dropped (by reason), events left."""
        if not self._started:
            return "edge stopped before it started"
        captured = sum(c["frames"] for c in self._reader_counts().values())
        drops: Counter[str] = Counter()
        for (_camera, reason), n in self.hub.drops.items():
            drops[reason] += n
        dropped = sum(drops.values())
        detail = f" ({', '.join(f'{r} {n}' for r, n in drops.most_common())})" if dropped else ""
        return (
            f"edge stopped ({self.stop_reason}): {captured} frames read, "
            f"{self.pipeline.counters['frames']} processed, {dropped} dropped{detail}; "
            f"{self.relay.counters['delivered']} events delivered, {self.outbox_left} left in the outbox"
            + (f"; abandoned: {', '.join(self.abandoned)}" if self.abandoned else "")
        )

    # -- metrics ----------------------------------------------------------------------------

    def _reader_counts(self) -> dict[str, Counter[str]]:
        """Each camera's reader counts: its live reader's plus those of its retired ones."""
        with self._counts_lock:
            readers = {k: Counter(v) for k, v in self.retired_counters.items()}
            for c in list(self.cameras.values()):
                readers[c.camera_id] = readers.get(c.camera_id, Counter()) + Counter(c.reader.counters)
        return readers

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
        if p.interval is not None:
            yield gauge(
                "wv_edge_auto_interval",
                "Automatic inference interval of the live cameras (1: every frame inferred).",
                1 + p.interval.extra,
            )
            yield counter(
                "wv_edge_auto_interval_held",
                "Step downs of the automatic interval not tried: the loop would not keep up one lower.",
                [],
                {(): p.interval.held},
            )
        yield gauge(
            "wv_edge_batch_wait_seconds", "Current adaptive batch fill wait.", self.controller.wait_ms / 1000
        )
        readers = self._reader_counts()
        for name, doc, key in (
            ("wv_edge_frames_captured", "Frames decoded (each later processed or dropped).", "frames"),
            ("wv_edge_source_reconnects", "Source reconnect attempts.", "reconnects"),
            ("wv_edge_source_errors", "Source open/read failures.", "read_errors"),
        ):
            yield counter(name, doc, ["camera"], {(k,): v[key] for k, v in readers.items()})
        kinds = {("decision",): p.counters["events_decision"], ("detection",): p.counters["events_detection"]}
        yield counter("wv_edge_events", "Events written to the outbox.", ["kind"], kinds)
        yield counter("wv_edge_anomalies", "Anomaly flags raised.", [], {(): p.counters["anomalies"]})
        yield counter(
            "wv_edge_fallback_superseded",
            "Fallback-answered batches, and fallback detection events, the late primary result superseded.",
            ["what"],
            {("batches",): p.counters["batches_superseded"], ("events",): p.counters["events_superseding"]},
        )
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
        state = self.watchdog.state()
        yield gauge(
            "wv_edge_healthy",
            "1 while no working thread is stalled (what /healthz answers), 0 once one is.",
            0.0 if self.stalls or any(s["stalled"] for s in state.values()) else 1.0,
        )
        yield gauge(
            "wv_edge_progress_age_seconds",
            "Seconds since each working thread last made progress.",
            labels=["component"],
            values={(name,): float(s["progress_age_s"]) for name, s in state.items()},
        )
        yield gauge(
            "wv_edge_stalled",
            "1 for a working thread without progress for watchdog.stall_s while it had work.",
            labels=["component"],
            values={(name,): float(bool(s["stalled"])) for name, s in state.items()},
        )
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


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _polygon(zone: ZoneSpec) -> np.ndarray:

    return np.asarray(zone.points(), dtype=np.float32)
