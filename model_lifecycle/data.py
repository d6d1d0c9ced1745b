"""Training samples: frames with ground truth -> resized uint8 images + normalised box targets.

Samples stay uint8 at the model input size until they reach the device (4x less host memory and
transfer than float32); `normalize_on_device` applies the same mean/std as `preprocess`.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from contract.frames import Frame
from contract.vocabulary import CONDITIONS
from edge.model.preprocess import MEAN, STD, resize_rgb

CONDITION_INDEX = {c: i for i, c in enumerate(CONDITIONS)}


@dataclass(frozen=True)
class Sample:
    image: np.ndarray
    """RGB uint8 (3, h, w) at the model input size."""
    boxes: np.ndarray
    """(M, 4) float32 normalised x1, y1, x2, y2."""
    conditions: np.ndarray
    """(M,) int64 indices into CONDITIONS."""
    skus: np.ndarray
    """(M,) int64 stable hashes of the SKU strings (equal SKU <=> equal id)."""


def sku_id(sku: str) -> int:
    return zlib.crc32(sku.encode())


def frame_to_sample(frame: Frame, input_size: tuple[int, int]) -> Sample:
    fh, fw = frame.image.shape[:2]
    scale = np.array([fw, fh, fw, fh], dtype=np.float32)
    truth = [t for t in frame.truth if t.box.area > 0]
    boxes = np.array([t.box.as_array() for t in truth], dtype=np.float32).reshape(-1, 4) / scale
    return Sample(
        image=resize_rgb(frame.image, input_size),
        boxes=np.clip(boxes, 0.0, 1.0),
        conditions=np.array([CONDITION_INDEX[t.condition] for t in truth], dtype=np.int64),
        skus=np.array([sku_id(t.sku) for t in truth], dtype=np.int64),
    )


class FrameDataset(Dataset):
    """Map-style dataset over any deterministic `index -> Frame` function (simulator or files)."""

    def __init__(self, frame_fn: Callable[[int], Frame], length: int, input_size: tuple[int, int]) -> None:
        self.frame_fn = frame_fn
        self.length = length
        self.input_size = input_size

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Sample:
        return frame_to_sample(self.frame_fn(int(index)), self.input_size)


def collate(samples: Sequence[Sample]) -> dict[str, torch.Tensor]:
    """Stack images; pad per-image targets to the batch's largest package count (`valid` marks real ones)."""
    m = max(max((len(s.boxes) for s in samples), default=0), 1)
    b = len(samples)
    boxes = torch.zeros(b, m, 4)
    conditions = torch.zeros(b, m, dtype=torch.long)
    skus = torch.zeros(b, m, dtype=torch.long)
    valid = torch.zeros(b, m, dtype=torch.bool)
    for i, s in enumerate(samples):
        k = len(s.boxes)
        boxes[i, :k] = torch.from_numpy(s.boxes)
        conditions[i, :k] = torch.from_numpy(s.conditions)
        skus[i, :k] = torch.from_numpy(s.skus)
        valid[i, :k] = True
    images = torch.from_numpy(np.stack([s.image for s in samples]))
    return {"images": images, "boxes": boxes, "conditions": conditions, "skus": skus, "valid": valid}


def normalize_on_device(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, h, w) -> float32 network input, identical to `preprocess.normalize`."""
    mean = torch.as_tensor(MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.as_tensor(STD, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std


class CachedSamples(Dataset):
    """All samples rendered once and held as padded tensors (optionally on the GPU).

    The simulator renders ~60 frames/s per core while a GPU trains the tiny model several times
    faster, so GPU runs render a fixed set once and train many epochs over it; `__getitems__`
    hands the DataLoader whole batches (no per-sample collation, no host round trip).
    """

    def __init__(self, samples: Sequence[Sample], device: str | torch.device = "cpu") -> None:
        batch = collate(samples)
        self.tensors = {k: v.to(device) for k, v in batch.items()}

    def __len__(self) -> int:
        return int(self.tensors["images"].shape[0])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.__getitems__([index])

    def __getitems__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(indices, device=self.tensors["images"].device)
        return {k: v.index_select(0, idx) for k, v in self.tensors.items()}


def render_samples(dataset: FrameDataset, workers: int, chunk: int = 64) -> list[Sample]:
    """Render every sample of `dataset` in `workers` processes, in index order."""
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=chunk, num_workers=workers, collate_fn=list, shuffle=False
    )
    return [s for part in loader for s in part]


def passthrough(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """collate_fn for datasets that already return whole batches."""
    return batch
