"""A camera's frame slots in shared memory: decode workers write pixels, the inference loop reads them.

One anonymous memory file (``memfd_create``) per camera, cut into ``slots`` equal slots of
``slot_bytes``. The edge process creates it and hands the descriptor to the worker over their pipe
(``SCM_RIGHTS``), so there is no name in ``/dev/shm`` to leak when either side dies, and the memory
goes back to the system once both have closed it. Only the pages a frame actually covers are ever
touched: a 640x360 camera uses 0.7 MB of each slot, whatever ``slot_bytes`` allows.

Which slot is free is decided by messages, not by the memory: the worker writes only into slots
the edge gave back (see `edge.capture.workers`).
"""

from __future__ import annotations

import contextlib
import mmap
import os

import numpy as np


class FrameRing:
    """`slots` frame buffers of at most `slot_bytes` each, over one shared memory file."""

    def __init__(self, fd: int, slots: int, slot_bytes: int) -> None:
        self.fd = fd
        self.slots = slots
        self.slot_bytes = slot_bytes
        self._map = mmap.mmap(fd, slots * slot_bytes)
        self._array = np.frombuffer(self._map, dtype=np.uint8)

    @classmethod
    def create(cls, name: str, slots: int, slot_bytes: int) -> FrameRing:
        fd = os.memfd_create(f"wv-frames-{name}", os.MFD_CLOEXEC)
        os.ftruncate(fd, slots * slot_bytes)
        return cls(fd, slots, slot_bytes)

    def view(self, slot: int, shape: tuple[int, ...]) -> np.ndarray:
        """The pixels of `slot` as an array of `shape` (no copy)."""
        size = int(np.prod(shape))
        if size > self.slot_bytes:
            raise ValueError(f"a frame of shape {shape} needs {size} bytes; slots hold {self.slot_bytes}")
        start = slot * self.slot_bytes
        return self._array[start : start + size].reshape(shape)

    def write(self, slot: int, image: np.ndarray) -> None:
        np.copyto(self.view(slot, image.shape), image)

    def close(self) -> None:
        """Unmap and close; views still held elsewhere keep the mapping alive until they go."""
        del self._array
        with contextlib.suppress(BufferError):  # a view is still referenced: the mapping ends with it
            self._map.close()
        os.close(self.fd)
