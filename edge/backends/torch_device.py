"""The torch engine's work on its device: frames preprocessed there, and CUDA graphs per batch size.

`DevicePreprocess` does on the engine's device what `edge.model.preprocess` does with OpenCV:
uint8 BGR frames are stacked into a pinned host buffer (one per frame shape, reused), copied
asynchronously, then flipped to RGB, resized and normalised there. Shrinking is OpenCV's
INTER_AREA exactly (each output pixel the area-weighted mean of the input pixels it covers, as
two small matrix products: torch's own "area" mode, an adaptive pooling, differs by 2 grey levels
on average), enlarging is bilinear with pixel centres as OpenCV's INTER_LINEAR. Only 1 byte per pixel crosses the bus
instead of 4, and the CPU does one memcpy per frame instead of a resize and a float conversion.
Before a pinned buffer is refilled, the copy that last read it is waited for (a CUDA event).

Frames in memory already page-locked for CUDA (`HostPins`: the decode workers' shared-memory slots,
`edge.capture.ring`) skip the pinned buffer: the GPU copies each straight from its slot, as
DeepStream's decoders write into surfaces the GPU reads. That copy on the CPU cost half of the
preprocessing at 64 cameras on an H100 (it waited for the interpreter lock, docs/benchmarks.md).
A slot goes back to its worker once the batch is written, so the call waits for the stream
(the GPU has read the slots) before it returns; the lock of `HostPins` is held meanwhile, so a slot
is never unlocked (a camera removed) under a copy in flight.

`GraphRunner` replays a CUDA graph captured per batch bucket (powers of two up to the largest
bucket): a batch is padded to its bucket, copied into the graph's static input, and the graph
replayed in one launch instead of one per kernel (the Model section of docs/benchmarks.md: batch 1
drops from 4.3 ms eager to 0.75 ms). Larger batches than the largest bucket run in chunks. The
logic (buckets, padding, chunking) is plain Python and tested on CPU with eager execution.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from edge.model.preprocess import MEAN, STD

log = logging.getLogger(__name__)

CUDA_HOST_REGISTER_PORTABLE = 1
"""Locked for every CUDA context (the engine's device need not be the registering thread's)."""


class HostPins:
    """Host memory of other owners page-locked for the GPU (an `edge.capture.ring.PageLocker`).

    `register(address, nbytes)` returns None or why it failed, `unregister(address)` undoes it
    (cudaHostRegister/cudaHostUnregister through `cuda_host_pins`). After the first failure no
    more is locked: frames are copied through the pinned buffer as before, and the reason logged."""

    def __init__(
        self, register: Callable[[int, int], str | None], unregister: Callable[[int], str | None]
    ) -> None:
        self._register = register
        self._unregister = unregister
        self._lock = threading.Lock()
        self._pinned: dict[int, int] = {}
        self.failed: str | None = None
        self.counters: Counter[str] = Counter()
        """frames uploaded straight from locked memory (direct) or through the pinned buffer (staged)."""

    def lock(self, address: int, nbytes: int) -> bool:
        if self.failed is not None:
            return False
        error = self._register(address, nbytes)
        if error is not None:
            self.failed = error
            log.warning(
                "frames are copied through a pinned buffer: page-locking shared memory failed (%s)", error
            )
            return False
        with self._lock:
            self._pinned[address] = nbytes
        return True

    def unlock(self, address: int) -> None:
        with self._lock:  # waits for an upload reading it
            if self._pinned.pop(address, None) is None:
                return
            error = self._unregister(address)
        if error is not None:
            log.warning("unlocking shared frame memory at %#x failed (%s)", address, error)

    def covers(self, image: np.ndarray) -> bool:
        """`image` lies in locked memory (call inside `using`)."""
        if not image.flags.c_contiguous:
            return False
        return self._pinned.get(image.__array_interface__["data"][0], 0) >= image.nbytes

    @contextlib.contextmanager
    def using(self) -> Iterator[None]:
        """Nothing is unlocked while held (an upload from locked memory is in flight)."""
        with self._lock:
            yield

    @property
    def pinned_bytes(self) -> int:
        return sum(self._pinned.values())


_CUDA_PINS: HostPins | None = None


def cuda_host_pins() -> HostPins:
    """The process's `HostPins` for CUDA (registrations are the process's, not an engine's)."""
    global _CUDA_PINS
    if _CUDA_PINS is None:
        import torch

        cudart = torch.cuda.cudart()

        def call(fn: Callable[..., Any], *args: int) -> str | None:
            try:
                error = fn(*args)
            except Exception as exc:  # an older binding that raises instead of returning
                return f"{fn.__name__}: {exc}"
            return None if error == cudart.cudaError.success else f"{fn.__name__}: CUDA error {int(error)}"

        _CUDA_PINS = HostPins(
            lambda address, nbytes: call(
                cudart.cudaHostRegister, address, nbytes, CUDA_HOST_REGISTER_PORTABLE
            ),
            lambda address: call(cudart.cudaHostUnregister, address),
        )
    return _CUDA_PINS


class DevicePreprocess:
    """BGR uint8 frames → normalised (B, 3, h, w) tensor on `device` in `dtype`."""

    def __init__(
        self, torch: Any, device: Any, dtype: Any, input_size: tuple[int, int], pins: HostPins | None = None
    ) -> None:
        self._torch = torch
        self._device = device
        self._dtype = dtype
        self.input_size = input_size
        self._pin = device.type == "cuda"
        self._pins = pins
        self._foreach = True
        self._direct = False
        """This call uploaded frames straight from locked memory (wait for it before returning)."""
        self._mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1) * 255.0
        self._inv_std = 1.0 / (torch.tensor(STD, device=device).view(1, 3, 1, 1) * 255.0)
        self._host: dict[tuple[int, ...], Any] = {}
        self._copied: dict[tuple[int, ...], Any] = {}
        self._weights: dict[tuple[int, int], Any] = {}

    def __call__(self, images: Sequence[np.ndarray]) -> Any:
        if self._pins is None:
            return self._prepare(images)
        with self._pins.using():
            self._direct = False
            out = self._prepare(images)
            if self._direct and self._pin:
                self._torch.cuda.current_stream().synchronize()  # the slots have been read
        return out

    def _prepare(self, images: Sequence[np.ndarray]) -> Any:
        torch = self._torch
        h, w = self.input_size
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(images):
            groups.setdefault(image.shape, []).append(i)
        out = None
        for shape, idx in groups.items():
            x = self._to_device(shape, [images[i] for i in idx])
            x = x.permute(0, 3, 1, 2).flip(1).float()  # BGR HWC → RGB CHW
            if shape[0] >= h and shape[1] >= w:
                x = self._area(shape[0], h) @ x @ self._area(shape[1], w).T
            else:
                x = torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
            x = ((x - self._mean) * self._inv_std).to(self._dtype)
            if len(groups) == 1:
                return x
            if out is None:
                out = torch.empty((len(images), 3, h, w), dtype=self._dtype, device=self._device)
            out[torch.tensor(idx, device=self._device)] = x
        return out

    def _area(self, n_in: int, n_out: int) -> Any:
        key = (n_in, n_out)
        if key not in self._weights:
            self._weights[key] = self._torch.from_numpy(area_weights(n_in, n_out)).to(self._device)
        return self._weights[key]

    def _to_device(self, shape: tuple[int, ...], frames: list[np.ndarray]) -> Any:
        pins = self._pins
        direct = [i for i, f in enumerate(frames) if pins.covers(f)] if pins is not None else []
        if not direct:
            if pins is not None:
                pins.counters["staged"] += len(frames)
            return self._staged(shape, frames)
        assert pins is not None
        torch = self._torch
        dev = torch.empty((len(frames), *shape), dtype=torch.uint8, device=self._device)
        rows = dev.unbind(0)
        self._copy_all([rows[i] for i in direct], [torch.from_numpy(frames[i]) for i in direct])
        if len(direct) < len(frames):
            taken = set(direct)
            rest = [i for i in range(len(frames)) if i not in taken]
            dev[torch.tensor(rest, device=self._device)] = self._staged(shape, [frames[i] for i in rest])
        pins.counters["direct"] += len(direct)
        pins.counters["staged"] += len(frames) - len(direct)
        self._direct = True
        return dev

    def _copy_all(self, targets: list[Any], sources: list[Any]) -> None:
        """One call for every frame (each torch call lets the interpreter lock go, and getting it
        back beside a thread running Python can take a switch interval); one by one if the
        private `_foreach_copy_` is missing or refuses."""
        torch = self._torch
        if self._foreach:
            try:
                torch._foreach_copy_(targets, sources, non_blocking=self._pin)
                return
            except (AttributeError, RuntimeError, TypeError) as exc:
                self._foreach = False
                log.warning("frames are uploaded one call each: torch._foreach_copy_ failed (%s)", exc)
        for target, source in zip(targets, sources, strict=True):
            target.copy_(source, non_blocking=self._pin)

    def _staged(self, shape: tuple[int, ...], frames: list[np.ndarray]) -> Any:
        """Stacked into a pinned buffer on the CPU, then one asynchronous copy."""
        torch = self._torch
        n = len(frames)
        host = self._host.get(shape)
        if host is None or host.shape[0] < n:
            host = torch.empty((max(n, 8), *shape), dtype=torch.uint8, pin_memory=self._pin)
            self._host[shape] = host
            self._copied.pop(shape, None)
        elif (event := self._copied.get(shape)) is not None:
            event.synchronize()  # the previous upload from this buffer has finished
        np.stack(frames, out=host.numpy()[:n])
        dev = host[:n].to(self._device, non_blocking=self._pin)
        if self._pin:
            event = torch.cuda.Event()
            event.record()
            self._copied[shape] = event
        return dev


def area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix: output pixel i averages input [i·s, (i+1)·s), s = n_in / n_out."""
    scale = n_in / n_out
    edges = np.arange(n_out + 1) * scale
    lo, hi = edges[:-1, None], edges[1:, None]
    j = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0, None)
    return (overlap / scale).astype(np.float32)


def buckets(largest: int) -> list[int]:
    """Batch sizes that get a graph: powers of two up to `largest` (and `largest` itself)."""
    out, b = [], 1
    while b < largest:
        out.append(b)
        b *= 2
    return [*out, largest]


class GraphRunner:
    """Runs `forward` on padded, bucketed batches through `capture(bucket)` replay functions.

    `capture(bucket)` returns (static input tensor, replay → outputs dict); on CPU a test passes
    an eager stand-in. Graphs are captured lazily, the first time a bucket is needed."""

    def __init__(
        self, capture: Callable[[int], tuple[Any, Callable[[], dict[str, Any]]]], largest: int
    ) -> None:
        self._capture = capture
        self.buckets = buckets(largest)
        self._graphs: dict[int, tuple[Any, Callable[[], dict[str, Any]]]] = {}

    def bucket(self, n: int) -> int:
        return next(b for b in self.buckets if b >= n)

    def __call__(self, x: Any) -> list[dict[str, Any]]:
        """Outputs of the batch, one dict per chunk (a chunk is at most the largest bucket)."""
        top = self.buckets[-1]
        return [self._one(x[i : i + top]) for i in range(0, len(x), top)]

    def _one(self, x: Any) -> dict[str, Any]:
        n = len(x)
        b = self.bucket(n)
        if b not in self._graphs:
            self._graphs[b] = self._capture(b)
        static, replay = self._graphs[b]
        static[:n].copy_(x)
        return {k: v[:n] for k, v in replay().items()}
