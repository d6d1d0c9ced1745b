"""One thread per camera: read frames, reconnect with backoff, hand frames to the policy queue."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Protocol

import numpy as np

from edge.capture.queues import Captured
from edge.retry import Backoff
from edge.sources.base import EndOfStream, FrameSource
from edge.watchdog import Heartbeat

log = logging.getLogger(__name__)


class FrameSink(Protocol):
    """Where a reader hands its frames: the hub's queue, or a decode worker's shared-memory ring."""

    def put(self, item: Captured) -> bool: ...

    def drop(self, reason: str, n: int = 1) -> None: ...


class CameraReader:
    """Owns one source. A failing open or read closes it and retries after a jittered backoff;
    a finite source ends the reader unless `restart_at_end`."""

    def __init__(
        self,
        source: FrameSource,
        queue: FrameSink,
        backoff: Backoff,
        restart_at_end: bool = False,
        interval: int = 1,
    ) -> None:
        self.source = source
        self.queue = queue
        self.backoff = backoff
        self.restart_at_end = restart_at_end
        self.interval = interval
        """Hand over every `interval`-th frame (by index); the tracker predicts across the rest."""
        self.camera_id = source.camera_id
        self.counters: Counter[str] = Counter()
        """frames, reconnects, read_errors, bad_frames, skipped_interval."""
        self.finished = threading.Event()
        self._stop = threading.Event()
        self.heartbeat = Heartbeat(f"camera-{self.camera_id}", has_work=self._has_work)
        """Beats per frame read (or failed attempt); idle while backing off or held by a full queue."""
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.camera_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def set_interval(self, interval: int) -> None:
        self.interval = interval

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        """The reader thread still runs (after stop(): it is stuck in a read)."""
        return self._thread.is_alive()

    def _has_work(self) -> bool:
        return self._thread.is_alive() and not self._stop.is_set() and not self.finished.is_set()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.heartbeat.beat()
                if not self._step():
                    break
        finally:
            self.source.close()
            self.finished.set()

    def _step(self) -> bool:
        """Read and enqueue one frame; False when the reader should end."""
        started_wall = time.time()
        try:
            frame = self.source.read()
        except EndOfStream:
            if not self.restart_at_end:
                log.info("camera %s: source ended", self.camera_id)
                return False
            self.source.close()
            return True
        except Exception as exc:  # SourceError, or anything a decoder throws at a broken stream
            self.counters["read_errors"] += 1
            self.source.close()
            delay = self.backoff.next_delay()
            log.warning("camera %s: %s; reconnecting in %.2fs", self.camera_id, exc, delay)
            with self.heartbeat.idle():
                self._stop.wait(delay)
            self.counters["reconnects"] += 1
            return True
        ended, ended_wall = time.monotonic(), time.time()
        # A paced source (live camera, realtime replay) blocks in read() until the frame exists;
        # that wait is not latency. The frame counts as captured at its own timestamp when that
        # falls inside the read call, else when the read started (so decoding is always counted).
        due = min(max(frame.timestamp, started_wall), ended_wall)
        captured_at = ended - (ended_wall - due)
        decode_ms = (ended - captured_at) * 1000
        image = frame.image
        if not _valid_image(image):
            self.counters["bad_frames"] += 1
            self.queue.drop("bad_frame")
            log.warning(
                "camera %s: dropped a malformed frame %s", self.camera_id, getattr(image, "shape", None)
            )
            return True
        self.backoff.reset()
        self.counters["frames"] += 1
        self.heartbeat.beat()
        if frame.index % self.interval:
            self.counters["skipped_interval"] += 1
            return True
        with self.heartbeat.idle():  # an `every` queue that is full holds the reader: backpressure
            accepted = self.queue.put(Captured(frame, captured_at, decode_ms))
        if not accepted:
            self.queue.drop("shutdown")
            return False
        return True


def _valid_image(image: object) -> bool:
    """A non-empty BGR uint8 (H, W, 3) array; anything else is a corrupt frame."""
    return (
        isinstance(image, np.ndarray)
        and image.ndim == 3
        and image.shape[2] == 3
        and image.shape[0] > 0
        and image.shape[1] > 0
        and image.dtype == np.uint8
    )
