"""Plain data types shared by frame producers and consumers: the simulator, the edge and the model lifecycle.

They carry numpy arrays and primitives only, so every edge module (and the tests) can use
them without pulling in torch, ONNX Runtime or the transport.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from contract.vocabulary import CONDITIONS


@dataclass(frozen=True, slots=True)
class Box:
    """Axis-aligned box in frame pixels, (x1, y1) top-left inclusive, (x2, y2) bottom-right exclusive."""

    x1: float
    y1: float
    x2: float
    y2: float

    @property
    def area(self) -> float:
        return max(0.0, self.x2 - self.x1) * max(0.0, self.y2 - self.y1)

    def iou(self, other: Box) -> float:
        ix = max(0.0, min(self.x2, other.x2) - max(self.x1, other.x1))
        iy = max(0.0, min(self.y2, other.y2) - max(self.y1, other.y1))
        inter = ix * iy
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def as_array(self) -> np.ndarray:
        return np.array([self.x1, self.y1, self.x2, self.y2], dtype=np.float32)


@dataclass(frozen=True, slots=True)
class PackageTruth:
    """Ground truth for one package visible in one frame (the simulator's answer key)."""

    package_id: str
    sku: str
    package_type: str
    condition: str
    box: Box
    zone: str
    expected_zone: str


@dataclass(frozen=True, slots=True)
class PackageIdentity:
    """Who a package is, as a label or barcode reader tells: id, SKU and the zone it should be in."""

    package_id: str
    sku: str
    expected_zone: str = ""


@dataclass(slots=True)
class Frame:
    """One camera frame: BGR uint8 pixels (H, W, 3) plus where it came from."""

    camera_id: str
    index: int
    timestamp: float
    """Capture time, seconds since the epoch (the simulator's clock may be accelerated)."""
    image: np.ndarray
    truth: list[PackageTruth] = field(default_factory=list)
    """Empty for real cameras; filled by the synthetic source."""


@dataclass(frozen=True, slots=True)
class Detection:
    """One package found by the model in one frame, in frame pixel coordinates."""

    box: Box
    score: float
    condition_probs: np.ndarray
    """Probabilities over CONDITIONS, shape (5,), summing to 1."""
    embedding: np.ndarray
    """L2-normalised appearance embedding, shape (D,), for drift and SKU matching."""

    @property
    def condition(self) -> str:
        return CONDITIONS[int(np.argmax(self.condition_probs))]
