"""A camera's frame slots in shared memory: decode workers write pixels, the inference loop reads them.

One anonymous memory file (``memfd_create``) per camera, cut into ``slots`` equal slots of
``slot_bytes``. The edge process creates it and hands the descriptor to the worker over their pipe
(``SCM_RIGHTS``), so there is no name in ``/dev/shm`` to leak when either side dies, and the memory
goes back to the system once both have closed it. Only the pages a frame actually covers are ever
touched: a 640x360 camera uses 0.7 MB of each slot, whatever ``slot_bytes`` allows.

Which slot is free is decided by messages, not by the memory: the worker writes only into slots
the edge gave back (see `edge.capture.workers`).

In the edge process a ring may be given a `PageLocker` (the torch engine on CUDA): the pages a
frame covers are then page-locked for the GPU the first time a slot holds a frame that size, so
the GPU copies frames straight from the slots (no copy into a staging buffer on the CPU), and
unlocked when the ring closes. Slots start on page boundaries (`page_aligned`), so two slots'
locked ranges never share a page.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import threading
from typing import Protocol

import numpy as np


class PageLocker(Protocol):
    """Page-locks host memory for a device (`edge.backends.torch_device.HostPins` for CUDA)."""

    def lock(self, address: int, nbytes: int) -> bool:
        """Lock [address, address + nbytes); False when it could not (the caller copies instead)."""

    def unlock(self, address: int) -> None:
        """Undo a successful `lock` of `address`, once no copy from it is in flight."""


def page_aligned(nbytes: int) -> int:
    """`nbytes` rounded up to whole pages."""
    return -(-nbytes // mmap.PAGESIZE) * mmap.PAGESIZE


class FrameRing:
    """`slots` frame buffers of at most `slot_bytes` each, over one shared memory file."""

    def __init__(self, fd: int, slots: int, slot_bytes: int, locker: PageLocker | None = None) -> None:
        self.fd = fd
        self.slots = slots
        self.slot_bytes = slot_bytes
        self._map = mmap.mmap(fd, slots * slot_bytes)
        self._array = np.frombuffer(self._map, dtype=np.uint8)
        if locker is not None and slot_bytes % mmap.PAGESIZE:
            raise ValueError(f"slot_bytes {slot_bytes} must be whole pages to page-lock slots")
        self._locker = locker
        self._locked: dict[int, int] = {}
        """slot → bytes page-locked from its start."""
        self._guard = threading.Lock()
        self._closed = False

    @classmethod
    def create(cls, name: str, slots: int, slot_bytes: int, locker: PageLocker | None = None) -> FrameRing:
        fd = os.memfd_create(f"wv-frames-{name}", os.MFD_CLOEXEC)
        os.ftruncate(fd, slots * slot_bytes)
        return cls(fd, slots, slot_bytes, locker)

    def view(self, slot: int, shape: tuple[int, ...]) -> np.ndarray:
        """The pixels of `slot` as an array of `shape` (no copy), page-locked if the ring locks."""
        size = int(np.prod(shape))
        if size > self.slot_bytes:
            raise ValueError(f"a frame of shape {shape} needs {size} bytes; slots hold {self.slot_bytes}")
        start = slot * self.slot_bytes
        view = self._array[start : start + size].reshape(shape)
        if self._locker is not None and self._locked.get(slot, 0) < size:
            self._lock(slot, page_aligned(size), view)
        return view

    def _lock(self, slot: int, nbytes: int, view: np.ndarray) -> None:
        """Lock the slot's first `nbytes` (a larger frame than before: unlock the old range first).
        Called for a slot no batch is reading (the worker only writes into slots given back)."""
        assert self._locker is not None
        address = view.__array_interface__["data"][0]
        with self._guard:
            if self._closed:
                return
            if slot in self._locked:
                self._locker.unlock(address)
                del self._locked[slot]
            if self._locker.lock(address, nbytes):
                self._locked[slot] = nbytes

    @property
    def locked_bytes(self) -> int:
        return sum(self._locked.values())

    def write(self, slot: int, image: np.ndarray) -> None:
        np.copyto(self.view(slot, image.shape), image)

    def close(self) -> None:
        """Unlock, unmap and close; views still held elsewhere keep the mapping alive until they go."""
        with self._guard:
            self._closed = True
            if self._locker is not None:
                base = self._array.__array_interface__["data"][0]
                for slot in self._locked:
                    self._locker.unlock(base + slot * self.slot_bytes)
            self._locked.clear()
        del self._array
        with contextlib.suppress(BufferError):  # a view is still referenced: the mapping ends with it
            self._map.close()
        os.close(self.fd)
