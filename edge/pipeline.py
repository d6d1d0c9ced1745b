"""The inference loop: batch frames across cameras, infer, decode, track, decide, write the outbox.

Two threads run it, a batch apart (one with ``engine.post_thread: false``). The batching thread
(``inference-batch``) takes up to the controller's batch limit of the oldest waiting frames
(waiting a little for a fuller batch only while the oldest frame has slack), runs them through the
straggler runner and decodes the whole batch; the loop's own thread (``inference``) then hands each frame, in order per camera, to that
camera's tracker and decider, serialises the events of the whole batch (once) and writes them to
the outbox in one durable write (one fsync per batch, not per frame), before the relay is told.
While one batch is tracked and written, the next is on the GPU: on an H100 at 64 cameras the
per-frame Python work after inference took as long as everything else together
(docs/benchmarks.md); but the two share the interpreter lock, and every release of it by the
batching thread (a frame copy, a CUDA call) costs it up to a switch interval while the other
runs Python. Trackers, deciders, the late primary results and camera changes belong to
the loop's thread alone; camera changes apply with no batch in flight (`edge.batching.handoff`).

A frame's pixels may live in a decode worker's shared-memory slot (`edge.capture.workers`): they
are valid until the batch is written, when the slots go back to their workers (one message per
worker). Whatever keeps pixels longer (the shadow run of a candidate model) copies them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from contract.frames import Detection
from contract.proto import warehouse_vision_pb2 as pb
from edge.backends.base import ModelFiles
from edge.batching.controller import BatchController
from edge.batching.handoff import Handoff
from edge.batching.interval import IntervalController
from edge.batching.late import LATE_WAIT_AT_END_S, LateBatch, LateFrame, LateResults
from edge.batching.straggler import Outcome, StragglerRunner
from edge.capture.queues import Captured, FrameHub
from edge.capture.reader import CameraReader
from edge.capture.workers import RemoteReader, release_all
from edge.decisions.decider import Decider
from edge.decisions.events import FrameContext, ModelInfo, has_anomalies
from edge.hotswap.manager import LoadedModel, ModelManager, ShadowSample
from edge.metrics import EdgeMetrics
from edge.model.postprocess import decode
from edge.outbox.relay import Relay
from edge.outbox.store import Outbox
from edge.tracking.iou import IouTracker
from edge.watchdog import Heartbeat

log = logging.getLogger(__name__)

SAFETY_MS = 5.0


@dataclass
class CameraRuntime:
    camera_id: str
    reader: CameraReader | RemoteReader
    tracker: IouTracker
    decider: Decider
    interval: int = 1
    """The configured interval (the automatic one never goes below it)."""


@dataclass
class Inferred:
    """A batch between the two threads: inferred and decoded, to be tracked, decided and written."""

    items: list[Captured]
    model: LoadedModel
    """The active model when the batch was formed (it prepared the batch)."""
    outcome: Outcome
    detections: list[list[Detection]] | None
    """None when neither model produced a result."""
    started: float
    prep_done: float
    infer_done: float


def decode_for(
    raw: dict[str, np.ndarray], sizes: list[tuple[int, int]], files: ModelFiles
) -> list[list[Detection]]:
    """Decode with the thresholds the model version was evaluated with."""
    return decode(raw, sizes, files.score_threshold, files.iou_threshold)


class Pipeline:
    def __init__(
        self,
        facility_id: str,
        cameras: dict[str, CameraRuntime],
        hub: FrameHub,
        manager: ModelManager,
        runner: StragglerRunner,
        controller: BatchController,
        outbox: Outbox,
        relay: Relay,
        metrics: EdgeMetrics,
        budget_ms: float,
        interval: IntervalController | None = None,
        post_thread: bool = True,
    ) -> None:
        self.facility_id = facility_id
        self.cameras = cameras
        self.hub = hub
        self.manager = manager
        self.runner = runner
        self.controller = controller
        self.outbox = outbox
        self.relay = relay
        self.metrics = metrics
        self.budget_s = budget_ms / 1000
        self.counters: Counter[str] = Counter()
        """frames, batches, detections, events_detection, events_decision, anomalies."""
        self.frames_by_camera: Counter[str] = Counter()
        self.e2e_ms: deque[float] = deque(maxlen=100_000)
        """End-to-end latency of the most recent frames (capture to outbox), for benchmarks."""
        self.heartbeat = Heartbeat("inference", has_work=lambda: hub.pending() > 0)
        """Beats once per loop turn; stalled when frames wait and the loop does not come back."""
        self.interval = interval
        self.post_thread = post_thread
        """Track, decide and write on the loop's thread while a batching thread infers the next batch."""
        self._busy_s = [0.0, 0.0]
        """Seconds spent inferring (batching thread) and tracking/deciding/writing batches, for the
        automatic interval's judgement of whether a lower interval would fit."""
        self._changes: list[Callable[[], bool]] = []
        self._changes_lock = threading.Lock()
        self._controller_lock = threading.Lock()
        """The controller learns on the loop's thread and is asked on the batching thread."""
        self.late = LateResults(decode_for, self.counters)
        """Fallback-answered batches whose primary result is still to come (and supersede)."""

    # -- camera changes (applied on the loop's thread, between batches) ----------------------

    def request(self, change: Callable[[], bool]) -> None:
        """Run `change` on the inference thread between batches, each turn until it returns True
        (cameras are only added or removed there, so no batch sees half a camera)."""
        with self._changes_lock:
            self._changes.append(change)

    def _apply_changes(self) -> None:
        """In order: a change not ready yet (a reader still stopping) holds back the ones after it,
        so a camera removed and added again is never added before its old self is gone."""
        with self._changes_lock:
            pending, self._changes = self._changes, []
        for i, change in enumerate(pending):
            if not change():
                with self._changes_lock:
                    self._changes[:0] = pending[i:]
                return

    def _adapt_interval(self) -> None:
        """Under load, infer fewer frames of the live cameras (`IntervalController`)."""
        ctl = self.interval
        if ctl is None or not ctl.due():
            return
        live = [
            c
            for c in list(self.cameras.values())
            if getattr(self.hub.queues.get(c.camera_id), "policy", "") == "latest"
        ]
        handed = sum(c.reader.counters["frames"] - c.reader.counters["skipped_interval"] for c in live)
        dropped = sum(self.hub.drops[(c.camera_id, r)] for c in live for r in ("stale", "over_budget"))
        infer_s, post_s = self._busy_s
        busy = (infer_s, post_s) if self.post_thread else (infer_s + post_s,)
        if ctl.observe(handed, dropped, busy):
            k = min(1 + ctl.extra, ctl.max_interval)
            log.info("inference interval of live cameras now %d", k)
            for c in live:
                c.reader.set_interval(max(c.interval, k))

    def retire(self, camera_id: str) -> None:
        """Forget a camera whose reader has stopped: its live tracks end and their decisions are
        written; its counts (frames, drops) stay in the metrics."""
        cam = self.cameras.pop(camera_id)
        self._finish_camera(cam)

    # -- loop -------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Process frames until `stop` is set or every (finite) source ended, then finish tracks."""
        if self.post_thread:
            self._run_two_threads(stop)
        else:
            while not stop.is_set():
                self.heartbeat.beat()
                self._apply_changes()
                self._settle_late()
                self._adapt_interval()
                items = self.next_batch(stop)
                if items:
                    self._process_guarded(items)
                elif self._sources_ended() and not self.hub.depth() and not self._changes:
                    break
        self.drain()
        self.finish()

    def _run_two_threads(self, stop: threading.Event) -> None:
        """This thread tracks, decides and writes; batching and inference run a batch ahead on
        their own thread, which also beats the heartbeat (it is the one that takes frames; a
        stuck second stage stops it through the full hand-over)."""
        handoff: Handoff[Inferred] = Handoff()
        batcher = threading.Thread(
            target=self._batch_loop, args=(stop, handoff), name="inference-batch", daemon=True
        )
        batcher.start()
        try:
            while not handoff.finished():
                if self._changes:
                    handoff.pause(self._post_guarded)
                    try:
                        self._apply_changes()
                    finally:
                        handoff.resume()
                self._settle_late()
                self._adapt_interval()
                inferred = handoff.get(0.05)
                if inferred is not None:
                    self._post_guarded(inferred)
        finally:
            handoff.close()
            batcher.join()
            while (inferred := handoff.get(0)) is not None:
                self._post_guarded(inferred)

    def _batch_loop(self, stop: threading.Event, handoff: Handoff[Inferred]) -> None:
        """The batching thread: batch, infer and decode until `stop` or every source ended."""
        try:
            while not stop.is_set():
                self.heartbeat.beat()
                handoff.checkpoint(stop)
                items = self.next_batch(stop)
                if items:
                    inferred = self._infer_guarded(items)
                    if inferred is not None and not handoff.put(inferred):
                        self._drop(items, "pipeline_error")  # the loop's thread failed
                elif self._sources_ended() and not self.hub.depth() and not self._changes:
                    break
        finally:
            handoff.end()

    def _sources_ended(self) -> bool:
        """Every camera's (finite) source has ended. An edge left without cameras (all switched off
        in the camera registry) has not ended: it waits for the next one."""
        cameras = list(self.cameras.values())
        return bool(cameras) and all(c.reader.finished.is_set() for c in cameras)

    def next_batch(self, stop: threading.Event) -> list[Captured]:
        hub, ctl = self.hub, self.controller
        with hub.cond:
            while not hub.pending() and not stop.is_set() and not hub.closed:
                if self._sources_ended():
                    return []
                hub.cond.wait(0.1)
                if self._changes:  # camera changes wait for no frame, at most 0.1 s
                    return []
            oldest = hub.oldest()
            if oldest is None:
                return []
            with self._controller_lock:
                wait_s = ctl.fill_wait_s((time.monotonic() - oldest) * 1000)
            wait_until = time.monotonic() + wait_s
            while (
                hub.pending() < ctl.limit
                and (left := wait_until - time.monotonic()) > 0
                and not stop.is_set()
            ):
                hub.cond.wait(left)
            return hub.take(ctl.limit, self.budget_s)

    def drain(self) -> None:
        """Process every frame still queued, and what the readers still hand over until they have
        ended or the hub closed (a stop is asked before the readers are stopped: no frame a reader
        counted may be left behind unprocessed and uncounted)."""
        while True:
            with self.hub.cond:
                items = self.hub.take(max(1, self.controller.limit), float("inf"))
                if not items:
                    if self.hub.closed or all(c.reader.finished.is_set() for c in self.cameras.values()):
                        return
                    self.hub.cond.wait(0.05)
                    continue
            self._process_guarded(items)
            self._settle_late()
            self.heartbeat.beat()

    def _process_guarded(self, items: list[Captured]) -> None:
        """One batch, both stages on this thread (one thread, or the drain at the end)."""
        inferred = self._infer_guarded(items)
        if inferred is not None:
            self._post_guarded(inferred)

    def _infer_guarded(self, items: list[Captured]) -> Inferred | None:
        """An unexpected error drops (and counts) the batch's frames instead of the service."""
        started = time.monotonic()
        try:
            return self.infer(items)
        except Exception:
            log.exception("batch of %d frames failed; dropped", len(items))
            self._drop(items, "pipeline_error")
            return None
        finally:
            self._busy_s[0] += time.monotonic() - started

    def _post_guarded(self, inferred: Inferred) -> None:
        started = time.monotonic()
        try:
            self.post(inferred)
        except Exception:
            log.exception("batch of %d frames failed; dropped", len(inferred.items))
            self._count_drops(inferred.items, "pipeline_error")
        finally:
            release_all(inferred.items)
            self._busy_s[1] += time.monotonic() - started

    def _drop(self, items: list[Captured], reason: str) -> None:
        self._count_drops(items, reason)
        release_all(items)

    def _count_drops(self, items: list[Captured], reason: str) -> None:
        for c in items:
            self.hub.drop(c.frame.camera_id, reason)

    # -- one batch --------------------------------------------------------------------------

    def infer(self, items: list[Captured]) -> Inferred:
        """First stage (batching thread): prepare, infer, decode the whole batch."""
        started = time.monotonic()
        model = self.manager.active
        assert model is not None
        images = [c.frame.image for c in items]
        batch = model.engine.prepare(images)
        prep_done = time.monotonic()
        oldest = min(c.captured_at for c in items)
        grace = self.budget_s - (prep_done - oldest) - (self.controller.post_ms + SAFETY_MS) / 1000
        outcome = self.runner.run(model, batch, images, grace)
        infer_done = time.monotonic()
        if outcome.raw is None:
            return Inferred(items, model, outcome, None, started, prep_done, infer_done)
        sizes = [c.frame.image.shape[:2] for c in items]
        detections = decode_for(outcome.raw, sizes, outcome.model.files)
        if not outcome.fallback and outcome.primary_ms is not None and self.manager.candidate is not None:
            kept = [image.copy() for image in images]  # outlives the batch's shared slots
            self.manager.offer_shadow(
                ShadowSample(kept, sizes, detections, outcome.primary_ms, model.version)
            )
        return Inferred(items, model, outcome, detections, started, prep_done, infer_done)

    def post(self, inferred: Inferred) -> None:
        """Second stage (the loop's thread): track, decide, write; the controller learns."""
        items, outcome, detections = inferred.items, inferred.outcome, inferred.detections
        started, prep_done, infer_done = inferred.started, inferred.prep_done, inferred.infer_done
        self.counters["batches"] += 1
        self.metrics.batch_size.observe(len(items))
        if detections is None:
            self._count_drops(items, "inference_failed")
            backlog = self.hub.depth()
            with self._controller_lock:
                self.controller.observe(len(items), outcome.infer_ms, 0.0, [], backlog)
            return
        info = outcome.model.info(outcome.fallback)
        if outcome.late is not None:
            info = replace(info, provisional=True)
        shared = {
            "preprocess_ms": (prep_done - started) * 1000,
            "infer_ms": (infer_done - prep_done) * 1000,
        }
        decided = [
            self._decide(c, dets, info, shared, started) for c, dets in zip(items, detections, strict=True)
        ]
        if outcome.late is not None:
            frames = [LateFrame(ctx, c.frame.image.shape[:2], c.captured_at) for c, ctx, _, _ in decided]
            self.late.add(LateBatch(outcome.late, inferred.model, frames))
        write_started = time.monotonic()
        self._write([(events, ctx, c.captured_at, decided_at) for c, ctx, events, decided_at in decided])
        done = time.monotonic()
        e2e: list[float] = []
        for (c, ctx, _, _), dets in zip(decided, detections, strict=True):
            ctx.timings["publish_ms"] = (done - write_started) * 1000
            ctx.timings["end_to_end_ms"] = (done - c.captured_at) * 1000
            self.metrics.observe_stages(ctx.timings)
            self.counters["frames"] += 1
            self.counters["detections"] += len(dets)
            self.frames_by_camera[ctx.camera_id] += 1
            e2e.append(ctx.timings["end_to_end_ms"])
        self.e2e_ms.extend(e2e)
        post_ms = (time.monotonic() - infer_done) * 1000
        backlog = self.hub.depth()
        with self._controller_lock:
            self.controller.observe(len(items), outcome.infer_ms, post_ms, e2e, backlog)

    def _decide(
        self,
        c: Captured,
        dets: list[Detection],
        info: ModelInfo,
        shared: dict[str, float],
        batch_start: float,
    ) -> tuple[Captured, FrameContext, list[pb.DetectionEvent], float]:
        """Track one frame's detections and decide; the events are written with the batch's."""
        cam = self.cameras[c.frame.camera_id]
        t0 = time.monotonic()
        step = cam.tracker.update(c.frame.index, c.frame.timestamp, dets)
        t1 = time.monotonic()
        ctx = FrameContext(
            facility_id=self.facility_id,
            camera_id=cam.camera_id,
            frame_index=c.frame.index,
            timestamp=c.frame.timestamp,
            model=info,
            timings={
                "decode_ms": c.decode_ms,
                "queue_ms": (batch_start - c.ready_at) * 1000,
                **shared,
                "track_ms": (t1 - t0) * 1000,
            },
        )
        events = cam.decider.observe(ctx, step.matches, c.frame)
        events.extend(e for t in step.ended if (e := cam.decider.decide(t, ctx)) is not None)
        decided_at = time.monotonic()
        ctx.timings["decide_ms"] = (decided_at - t1) * 1000
        return c, ctx, events, decided_at

    def _write(self, frames: list[tuple[list[pb.DetectionEvent], FrameContext, float, float]]) -> None:
        """Every event of a batch in one durable outbox write (one fsync), then wake the relay.

        Each event is serialised here, once: the relay and the transport pass these bytes on."""
        now = time.monotonic()
        payloads = []
        for events, ctx, captured_at, decided_at in frames:
            for event in events:
                event.timings.decide_ms = ctx.timings["decide_ms"]
                event.timings.publish_ms = (now - decided_at) * 1000
                event.timings.end_to_end_ms = (now - captured_at) * 1000
                kind = "events_decision" if event.kind == pb.EVENT_KIND_DECISION else "events_detection"
                self.counters[kind] += 1
                self.counters["anomalies"] += len(event.anomalies)
                payloads.append((event.SerializeToString(), has_anomalies(event)))
        if payloads:
            self.outbox.put(payloads)
            self.relay.notify()

    def _settle_late(self, wait_s: float = 0.0) -> None:
        """Write the primary's results that arrived for batches the fallback answered."""
        if len(self.late):
            self._write(self.late.settle(self._decider, wait_s))

    def _decider(self, camera_id: str) -> Decider | None:
        cam = self.cameras.get(camera_id)
        return cam.decider if cam is not None else None

    def finish(self) -> None:
        """End every live track (shutdown or end of stream) and write their decisions; the last
        batches' primary results still running get a moment to count first."""
        self._settle_late(LATE_WAIT_AT_END_S)
        self.late.abandon(self._decider)
        for cam in list(self.cameras.values()):
            self._finish_camera(cam)

    def _finish_camera(self, cam: CameraRuntime) -> None:
        ended = cam.tracker.finish()
        last = cam.decider.last_context()
        if last is None:
            return
        events = [e for t in ended if (e := cam.decider.decide(t, last)) is not None]
        now = time.monotonic()
        self._write([(events, last, now, now)])
