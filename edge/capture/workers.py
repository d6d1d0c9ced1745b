"""Cameras decoded in worker processes; pixels reach the inference loop through shared memory.

One Python thread cannot decode (or render) dozens of streams and also feed a GPU, so with
``capture.workers: N`` the edge starts N decode processes and gives each camera to the one with
the fewest. Inside a worker every camera runs the same :class:`~edge.capture.reader.CameraReader`
as in-process capture (reconnects, backoff, end of file, malformed frames), but hands its frames to
a :class:`RingSink`: the pixels are copied once into a free slot of the camera's
:class:`~edge.capture.ring.FrameRing`, and only a small message (slot, shape, index, timestamp,
ground truth) crosses the pipe. The edge process wraps the slot in a ``Captured`` whose image is a
view of the shared memory and queues it under the camera's drop policy; when the frame has been
processed or dropped, the slot goes back to the worker (``free``). This is the structure of
Frigate (one FFmpeg decoder per camera writing into shared-memory frames, a small queue of frame
ids to the detector) and of DeepStream (decoders write into a fixed pool of surfaces; the pool's
size is the back-pressure).

Back-pressure: a camera owns ``slots`` slots. With `every` a worker that has no free slot waits
(the source is held back, as the in-process reader is held by a full queue); with `latest` it
drops the frame it just decoded as ``stale`` and keeps reading, so a live stream never falls
behind. Drops are counted per camera and reason in the edge's hub, wherever they happen (a
worker's own drops arrive with its status, four times a second).

Liveness: each worker sends every camera's counters and heartbeat four times a second; the edge
mirrors them into the camera's own :class:`~edge.watchdog.Heartbeat`, so the watchdog judges a
reader in a worker like one in-process. A worker process that dies is started again and its
cameras re-added (counted as reconnects).

Workers are started with ``spawn`` (never ``fork``: the edge process has threads), so a program
that embeds the edge must guard its entry point with ``if __name__ == "__main__"``, as any
multiprocessing program must (``wv edge run`` and the benchmarks do).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from multiprocessing import reduction
from multiprocessing.connection import Connection
from typing import Any

from contract.frames import Frame
from edge.capture.queues import CameraQueue, Captured, FrameHub
from edge.capture.reader import CameraReader
from edge.capture.ring import FrameRing, PageLocker, page_aligned
from edge.config import CameraConfig
from edge.retry import Backoff
from edge.watchdog import Heartbeat

log = logging.getLogger(__name__)

STATUS_EVERY_S = 0.25
LATEST_SLOTS = 4
"""One frame queued, one in the batch being processed, one being written, one in flight: the queue
always holds the camera's newest frame. (2 slots, so that only frames the loop can take cross the
pipe, halved the frames processed at 32 cameras on an H100: a slot came back only after its
batch, and the camera's next frame up to a frame interval later; docs/benchmarks.md.)"""
EVERY_EXTRA_SLOTS = 2
"""`every` cameras get queue_size + this many slots (frames in the running batch)."""


@dataclass(frozen=True)
class CameraSpec:
    """What a worker needs to run one camera (picklable)."""

    camera_id: str
    source: str
    policy: str
    restart_at_end: bool
    interval: int
    reconnect_base_s: float
    reconnect_cap_s: float
    slots: int
    slot_bytes: int
    generation: int
    """Distinguishes this run of the camera from an earlier one (re-pointed, worker restarted)."""


# -- worker process ---------------------------------------------------------------------------


class RingSink:
    """The worker side of one camera: frames into free slots, a message per frame to the edge."""

    def __init__(self, spec: CameraSpec, ring: FrameRing, send: Any) -> None:
        self.spec = spec
        self.ring = ring
        self._send = send
        self._cond = threading.Condition()
        self._free = list(range(spec.slots))
        self.closed = False
        self.drops: Counter[str] = Counter()
        """Dropped here since the last status message (sent with it)."""

    def put(self, item: Captured) -> bool:
        frame = item.frame
        with self._cond:
            while not self._free and not self.closed:
                if self.spec.policy == "latest":
                    self.drop("stale")  # keep reading the live stream; the newest frame matters
                    return True
                self._cond.wait(0.5)
            if self.closed:
                return False
            slot = self._free.pop()
        try:
            self.ring.write(slot, frame.image)
        except ValueError:  # larger than a slot: counted, the camera goes on
            self.give_back(slot)
            self.drop("frame_too_large")
            return True
        try:
            self._send(
                (
                    "frame",
                    self.spec.camera_id,
                    self.spec.generation,
                    slot,
                    frame.image.shape,
                    frame.index,
                    frame.timestamp,
                    frame.truth,
                    item.captured_at,
                    item.decode_ms,
                )
            )
        except BaseException:
            self.give_back(slot)  # never lose a slot: the camera would starve
            raise
        return True

    def drop(self, reason: str, n: int = 1) -> None:
        with self._cond:
            self.drops[reason] += n

    def take_drops(self) -> dict[str, int]:
        with self._cond:
            drops, self.drops = dict(self.drops), Counter()
        return drops

    def give_back(self, slot: int) -> None:
        with self._cond:
            self._free.append(slot)
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class _WorkerCamera:
    def __init__(self, spec: CameraSpec, fd: int, send: Any) -> None:
        from edge.sources.factory import open_source

        self.spec = spec
        self.ring = FrameRing(fd, spec.slots, spec.slot_bytes)
        self.sink = RingSink(spec, self.ring, send)
        self.reader = CameraReader(
            open_source(spec.source, spec.camera_id),
            self.sink,
            Backoff(spec.reconnect_base_s, spec.reconnect_cap_s),
            spec.restart_at_end,
            spec.interval,
        )

    def stop(self) -> None:
        self.reader.stop()
        self.sink.close()

    def status(self) -> tuple[Any, ...]:
        """Counters, heartbeat and drops since the last status, for the edge's mirror."""
        r, hb = self.reader, self.reader.heartbeat
        return (
            "status",
            self.spec.camera_id,
            self.spec.generation,
            dict(r.counters),
            hb.beats,
            hb.is_idle,
            hb.has_work(),
            r.finished.is_set(),
            self.sink.take_drops(),
        )


def worker_main(conn: Connection, log_level: int) -> None:
    """Entry point of a decode process: run cameras as the edge asks until it says stop."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s decode-worker %(message)s")
    lock = threading.Lock()
    cameras: dict[str, _WorkerCamera] = {}
    done = threading.Event()

    def send(message: tuple[Any, ...]) -> None:
        with lock:
            conn.send(message)

    def report() -> None:
        while not done.wait(STATUS_EVERY_S):
            for cam in list(cameras.values()):
                send(cam.status())

    threading.Thread(target=report, name="status", daemon=True).start()
    try:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break  # the edge is gone
            kind = message[0]
            if kind == "free":
                for camera_id, generation, slot in message[1]:
                    cam = cameras.get(camera_id)
                    if cam is not None and cam.spec.generation == generation:
                        cam.sink.give_back(slot)
            elif kind == "add":
                spec: CameraSpec = message[1]
                fd = reduction.recv_handle(conn)
                old = cameras.pop(spec.camera_id, None)
                if old is not None:
                    old.stop()
                cam = _WorkerCamera(spec, fd, send)
                cameras[spec.camera_id] = cam
                cam.reader.start()
            elif kind == "interval":
                cam = cameras.get(message[1])
                if cam is not None:
                    cam.reader.interval = message[2]
            elif kind == "remove":
                cam = cameras.pop(message[1], None)
                if cam is not None:
                    cam.stop()
                    threading.Thread(target=_ended, args=(cam, send), daemon=True).start()
            elif kind == "stop":
                break
    finally:
        done.set()
        for cam in cameras.values():
            cam.stop()
        for cam in cameras.values():
            cam.reader.join(2.0)
            with contextlib.suppress(OSError, ValueError):  # the edge may be gone already
                send(cam.status())  # the last counts and drops


def _ended(cam: _WorkerCamera, send: Any) -> None:
    cam.reader.join(10.0)
    send(cam.status())
    send(("removed", cam.spec.camera_id, cam.spec.generation))


# -- edge process -----------------------------------------------------------------------------


class _MirroredHeartbeat(Heartbeat):
    """A worker-side reader's heartbeat as the edge sees it (updated from status messages)."""

    def __init__(self, name: str) -> None:
        self.remote_busy = True
        """Until the worker reports otherwise: a worker that never starts must show as a stall."""
        self.remote_idle = False
        super().__init__(name, has_work=lambda: self.remote_busy)

    @property
    def is_idle(self) -> bool:
        return self.remote_idle or super().is_idle


class RemoteReader:
    """The edge's handle on a camera decoded in a worker; the interface of `CameraReader`."""

    def __init__(self, pool: DecodePool, spec: CameraSpec, queue: CameraQueue) -> None:
        self.pool = pool
        self.spec = spec
        self.camera_id = spec.camera_id
        self.queue = queue
        self.counters: Counter[str] = Counter()
        """frames, reconnects, read_errors, bad_frames (as the worker counted them)."""
        self._base: Counter[str] = Counter()
        """Counts of earlier runs of this camera (a restarted worker starts from zero)."""
        self.finished = threading.Event()
        self.heartbeat = _MirroredHeartbeat(f"camera-{self.camera_id}")
        self.ring: FrameRing | None = None
        self._beats = 0
        self._worker: _WorkerHandle | None = None
        self._stopped = False

    def start(self) -> None:
        self.pool.attach(self)

    def stop(self) -> None:
        self._stopped = True
        if self._worker is not None:
            self._worker.send(("remove", self.camera_id))

    def join(self, timeout: float) -> None:
        self.finished.wait(timeout)

    @property
    def alive(self) -> bool:
        return not self.finished.is_set()

    def set_interval(self, interval: int) -> None:
        self.spec = dataclasses.replace(self.spec, interval=interval)  # kept if the worker restarts
        if self._worker is not None:
            self._worker.send(("interval", self.camera_id, interval))

    def release(self, generation: int, slot: int) -> None:
        worker = self._worker
        if worker is not None:
            worker.send(("free", [(self.camera_id, generation, slot)]))

    # -- messages from the worker (its receiver thread) --

    def on_frame(self, message: tuple[Any, ...]) -> None:
        _, _, generation, slot, shape, index, timestamp, truth, captured_at, decode_ms = message
        ring = self.ring
        if generation != self.spec.generation or ring is None:
            return  # a frame of a run that was replaced; its ring is gone
        frame = Frame(self.camera_id, index, timestamp, ring.view(slot, shape), truth)
        item = Captured(frame, captured_at, decode_ms, release=SlotRelease(self, generation, slot))
        if not self.queue.put(item):  # the hub closed (shutdown)
            item.done()
            self.queue.drop("shutdown")

    def on_status(self, message: tuple[Any, ...]) -> None:
        _, _, generation, counters, beats, idle, busy, finished, drops = message
        for reason, n in drops.items():
            self.queue.drop(reason, n)
        if generation != self.spec.generation:
            return
        self.counters = self._base + Counter(counters)
        hb = self.heartbeat
        hb.remote_idle, hb.remote_busy = idle, busy
        if beats != self._beats:
            self._beats = beats
            hb.beat()
        if finished:
            self.finished.set()

    def restarted(self, spec: CameraSpec) -> None:
        """The worker died and this camera runs again in a new one (a reconnect)."""
        self._base = Counter(self.counters)
        self._base["reconnects"] += 1
        self.counters = Counter(self._base)
        self.spec = spec


@dataclass(frozen=True, slots=True)
class SlotRelease:
    """Gives one frame's shared-memory slot back to its worker (a `Captured.release`)."""

    reader: RemoteReader
    generation: int
    slot: int

    def __call__(self) -> None:
        self.reader.release(self.generation, self.slot)


def release_all(items: Iterable[Captured]) -> None:
    """A batch is done: its slots go back in one message per worker, not one per frame (at 64
    cameras the per-frame messages cost the inference thread 0.12 ms a frame on an H100)."""
    slots: dict[_WorkerHandle, list[tuple[str, int, int]]] = {}
    for item in items:
        release = item.release
        if isinstance(release, SlotRelease) and (worker := release.reader._worker) is not None:
            item.release = None
            slots.setdefault(worker, []).append((release.reader.camera_id, release.generation, release.slot))
        else:
            item.done()
    for worker, freed in slots.items():
        worker.send(("free", freed))


class _WorkerHandle:
    def __init__(self, pool: DecodePool, index: int) -> None:
        self.pool = pool
        self.index = index
        self.readers: dict[str, RemoteReader] = {}
        self._lock = threading.Lock()
        self.process: Any = None
        self.conn: Connection | None = None
        self.restarts = 0

    def start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        ours, theirs = ctx.Pipe(duplex=True)
        self.process = ctx.Process(
            target=worker_main,
            args=(theirs, logging.getLogger().getEffectiveLevel()),
            name=f"wv-decode-{self.index}",
            daemon=True,
        )
        self.process.start()
        theirs.close()
        self.conn = ours
        threading.Thread(
            target=self._receive, args=(ours,), name=f"decode-{self.index}-receiver", daemon=True
        ).start()

    def send(self, message: tuple[Any, ...], fd: int | None = None) -> None:
        conn = self.conn
        if conn is None:
            return
        with self._lock:
            try:
                conn.send(message)
                if fd is not None:
                    reduction.send_handle(conn, fd, self.process.pid)
            except (OSError, ValueError):  # the worker died; the receiver restarts it
                pass

    def add(self, reader: RemoteReader) -> None:
        ring = FrameRing.create(reader.camera_id, reader.spec.slots, reader.spec.slot_bytes, self.pool.locker)
        old, reader.ring = reader.ring, ring
        reader._worker = self
        self.readers[reader.camera_id] = reader
        self.send(("add", reader.spec), fd=ring.fd)
        if old is not None:
            old.close()

    def _receive(self, conn: Connection) -> None:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            try:
                self._dispatch(message)
            except Exception:  # a bug must not stop every camera of this worker
                log.exception("decode worker %d: message %s failed", self.index, message[:2])
        self.pool.worker_died(self, conn)

    def _dispatch(self, message: tuple[Any, ...]) -> None:
        kind, camera_id = message[0], message[1]
        reader = self.readers.get(camera_id)
        if reader is None:
            return
        if kind == "frame":
            reader.on_frame(message)
        elif kind == "status":
            reader.on_status(message)
        elif kind == "removed" and message[2] == reader.spec.generation:
            self.readers.pop(camera_id, None)
            reader.finished.set()

    def stop(self, timeout_s: float) -> None:
        self.send(("stop",))
        if self.process is not None:
            self.process.join(timeout_s)
            if self.process.is_alive():
                self.process.kill()
                self.process.join(1.0)
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class DecodePool:
    """N decode processes; each camera goes to the one with the fewest cameras. With a `locker`,
    the slots' frames are page-locked for the GPU in the edge process (`edge.capture.ring`)."""

    def __init__(
        self, hub: FrameHub, workers: int, slot_bytes: int, locker: PageLocker | None = None
    ) -> None:
        self.hub = hub
        self.slot_bytes = page_aligned(slot_bytes)
        self.locker = locker
        self.workers = [_WorkerHandle(self, i) for i in range(workers)]
        self.counters: Counter[str] = Counter()
        """worker_restarts."""
        self._generation = 0
        self._lock = threading.Lock()
        self._stopping = False
        self._attached: list[RemoteReader] = []
        for w in self.workers:
            w.start()

    def reader(self, camera: CameraConfig) -> RemoteReader:
        """A reader for one camera, with its queue in the hub sized to its slots (never blocks)."""
        every = camera.policy == "every"
        slots = camera.queue_size + EVERY_EXTRA_SLOTS if every else LATEST_SLOTS
        queue = self.hub.add(camera.id, camera.policy, slots if every else 1)
        spec = CameraSpec(
            camera.id,
            camera.source,
            camera.policy,
            camera.restart_at_end,
            camera.interval,
            camera.reconnect.base_s,
            camera.reconnect.cap_s,
            slots,
            self.slot_bytes,
            self._next_generation(),
        )
        return RemoteReader(self, spec, queue)

    def _next_generation(self) -> int:
        with self._lock:
            self._generation += 1
            return self._generation

    def attach(self, reader: RemoteReader) -> None:
        with self._lock:
            worker = min(self.workers, key=lambda w: len(w.readers))
            self._attached.append(reader)
        worker.add(reader)

    def detach(self, reader: RemoteReader) -> None:
        """A removed camera: its shared memory goes once the last view of it does."""
        with self._lock:
            self._attached = [r for r in self._attached if r is not reader]
        if reader.ring is not None:
            reader.ring.close()
            reader.ring = None

    def worker_died(self, worker: _WorkerHandle, conn: Connection) -> None:
        """Start the worker again and give it back its cameras (unless the edge is stopping)."""
        if self._stopping or worker.conn is not conn:
            return
        log.error(
            "decode worker %d died (exit code %s); restarting it with cameras %s",
            worker.index,
            worker.process.exitcode if worker.process is not None else None,
            sorted(worker.readers),
        )
        self.counters["worker_restarts"] += 1
        worker.restarts += 1
        readers = [r for r in worker.readers.values() if not r._stopped]
        worker.readers = {}
        conn.close()
        time.sleep(min(5.0, 0.2 * 2**worker.restarts))
        worker.start()
        for r in readers:
            r.restarted(dataclasses.replace(r.spec, generation=self._next_generation()))
            worker.add(r)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop every worker (readers should have been stopped first)."""
        self._stopping = True
        for w in self.workers:
            w.stop(timeout_s)
        for w in self.workers:
            for r in w.readers.values():
                r.finished.set()
        for r in self._attached:
            if r.ring is not None:
                r.ring.close()
                r.ring = None
