"""The torch engine's work on its device: frames preprocessed there, and CUDA graphs per batch size.

`DevicePreprocess` does on the engine's device what `edge.model.preprocess` does with OpenCV:
uint8 BGR frames are stacked into a pinned host buffer (one per frame shape, reused), copied
asynchronously, then flipped to RGB, resized and normalised there. Shrinking is OpenCV's
INTER_AREA exactly (each output pixel the area-weighted mean of the input pixels it covers, as
two small matrix products: torch's own "area" mode, an adaptive pooling, differs by 2 grey levels
on average), enlarging is bilinear with pixel centres as OpenCV's INTER_LINEAR. Only 1 byte per pixel crosses the bus
instead of 4, and the CPU does one memcpy per frame instead of a resize and a float conversion.
Before a pinned buffer is refilled, the copy that last read it is waited for (a CUDA event).

`GraphRunner` replays a CUDA graph captured per batch bucket (powers of two up to the largest
bucket): a batch is padded to its bucket, copied into the graph's static input, and the graph
replayed in one launch instead of one per kernel (the Model section of docs/benchmarks.md: batch 1
drops from 4.3 ms eager to 0.75 ms). Larger batches than the largest bucket run in chunks. The
logic (buckets, padding, chunking) is plain Python and tested on CPU with eager execution.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edge.model.preprocess import MEAN, STD


class DevicePreprocess:
    """BGR uint8 frames → normalised (B, 3, h, w) tensor on `device` in `dtype`."""

    def __init__(self, torch: Any, device: Any, dtype: Any, input_size: tuple[int, int]) -> None:
        self._torch = torch
        self._device = device
        self._dtype = dtype
        self.input_size = input_size
        self._pin = device.type == "cuda"
        self._mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1) * 255.0
        self._inv_std = 1.0 / (torch.tensor(STD, device=device).view(1, 3, 1, 1) * 255.0)
        self._host: dict[tuple[int, ...], Any] = {}
        self._copied: dict[tuple[int, ...], Any] = {}
        self._weights: dict[tuple[int, int], Any] = {}

    def __call__(self, images: Sequence[np.ndarray]) -> Any:
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
