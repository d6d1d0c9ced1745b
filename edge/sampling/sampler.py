"""Rate-limited frame sampling: a copy of a due frame is queued, a thread writes it as a JPEG.

The inference thread only compares timestamps and, about once a minute per camera, copies one
frame; encoding and the file write happen on the writer thread. A full queue drops the sample
(counted), never blocks inference. Files appear atomically (written under a dot-name, then
renamed) at ``<dir>/<facility>/<camera>/<YYYY-MM-DD>/<HHMMSS.ffffff>-<frame index>.jpg``, the time
being the frame's capture time in UTC (the simulator's clock in the demo).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from contract.frames import Frame

log = logging.getLogger(__name__)

QUEUE_SIZE = 16


def frame_path(root: Path, facility: str, camera: str, when: datetime, index: int) -> Path:
    """Where a sampled frame lives; the collecting asset reads facility, camera and day back from it."""
    return root / facility / camera / f"{when:%Y-%m-%d}" / f"{when:%H%M%S.%f}-{index}.jpg"


class FrameSampler:
    def __init__(
        self, facility: str, root: Path, interval_s: float, max_per_day: int, jpeg_quality: int = 85
    ) -> None:
        self.facility = facility
        self.root = root
        self.interval_s = interval_s
        self.max_per_day = max_per_day
        self.jpeg_quality = jpeg_quality
        self._last: dict[str, float] = {}
        self._per_day: Counter[tuple[str, str]] = Counter()
        self.counts: Counter[str] = Counter()
        """sampled, written, dropped (queue full), failed (write error)."""
        self._queue: queue.Queue[tuple[Path, np.ndarray] | None] = queue.Queue(QUEUE_SIZE)
        self._thread = threading.Thread(target=self._write_loop, name="frame-sampler", daemon=True)
        self._thread.start()

    def offer(self, frame: Frame) -> bool:
        """Queue a copy of `frame` if its camera is due; True when it was taken."""
        last = self._last.get(frame.camera_id)
        if last is not None and 0 <= frame.timestamp - last < self.interval_s:
            return False
        when = datetime.fromtimestamp(frame.timestamp, UTC)
        day = (frame.camera_id, f"{when:%Y-%m-%d}")
        if self._per_day[day] >= self.max_per_day:
            return False
        path = frame_path(self.root, self.facility, frame.camera_id, when, frame.index)
        try:
            self._queue.put_nowait((path, frame.image.copy()))
        except queue.Full:
            self.counts["dropped"] += 1
            return False
        self._last[frame.camera_id] = frame.timestamp
        self._per_day[day] += 1
        self.counts["sampled"] += 1
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the writer thread."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _write_loop(self) -> None:
        while (item := self._queue.get()) is not None:
            path, image = item
            try:
                write_jpeg(path, image, self.jpeg_quality)
                self.counts["written"] += 1
            except (OSError, ValueError) as exc:
                self.counts["failed"] += 1
                log.warning("sampled frame not written to %s: %s", path, exc)


def write_jpeg(path: Path, image: np.ndarray, quality: int) -> None:
    """Encode and write atomically: readers see the whole file or none."""
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"JPEG encoding failed for a {image.dtype} {image.shape} frame")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data.tobytes())
    os.replace(tmp, path)
