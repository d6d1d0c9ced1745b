"""Where training and evaluation frames come from: the conveyor simulator's i.i.d. frames.

The held-out evaluation set is fixed by `HELDOUT_SEED` (frames 0..n-1 of `render_iid`, default
simulator config and damage mix); INT8 calibration uses `CALIBRATION_SEED` so it never sees the
evaluation frames; training uses its own seed (1 by default), so the three never overlap.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, overload

import numpy as np

from contract.frames import Frame, PackageTruth

if TYPE_CHECKING:
    from simulator.conveyor import ConveyorSimulator

HELDOUT_SEED = 9001
CALIBRATION_SEED = 9002
DEFAULT_HELDOUT_FRAMES = 400
TRAIN_DAMAGE_MIX = {"ok": 0.5, "crushed": 0.125, "torn": 0.125, "wet": 0.125, "open": 0.125}
"""Training over-samples damage (the default scene mix is 80 % ok) so every class is learnt."""


def parse_mix(text: str) -> dict[str, float]:
    """'ok=0.5,wet=0.2' -> {'ok': 0.5, 'wet': 0.2}."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        out[name.strip()] = float(value)
    return out


@dataclass(frozen=True)
class SimulatedFrames:
    """Picklable `index -> Frame` over `render_iid`; each process builds its simulator on first use."""

    seed: int
    damage_mix: tuple[tuple[str, float], ...] | None = None
    drift: str | None = None

    def __call__(self, index: int) -> Frame:
        return self._simulator().render_iid(index)

    def _simulator(self) -> ConveyorSimulator:
        sim = _SIMULATORS.get(self)
        if sim is None:
            import cv2

            from simulator.config import SimConfig
            from simulator.conveyor import ConveyorSimulator

            cfg = SimConfig(damage_mix=dict(self.damage_mix)) if self.damage_mix else SimConfig()
            cv2.setNumThreads(1)  # one process per core renders faster than OpenCV's own threads
            sim = _SIMULATORS[self] = ConveyorSimulator(cfg, seed=self.seed, drift=self.drift)
        return sim

    def describe(self) -> dict[str, object]:
        return {
            "source": "simulator.ConveyorSimulator.render_iid",
            "seed": self.seed,
            "damage_mix": dict(self.damage_mix) if self.damage_mix else "simulator default",
            "drift": self.drift or "none",
        }


_SIMULATORS: dict[SimulatedFrames, ConveyorSimulator] = {}


class DirectoryFrames(Sequence[Frame]):
    """`index -> Frame` over a project dataset (`wv data` or `wv model import`: annotations.jsonl +
    images), optionally a subset of its records (`indices`, e.g. one side of a package split).

    It is also a lazy `Sequence[Frame]`: each access reads one image, so evaluation over thousands
    of full-size photographs never holds them all in memory."""

    def __init__(self, path: Path | str, indices: Sequence[int] | None = None) -> None:
        from simulator.dataset import ImageDataset

        self.dataset = ImageDataset(Path(path))
        self.indices = list(range(len(self.dataset))) if indices is None else list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __call__(self, index: int) -> Frame:
        return self.dataset.frame(self.indices[index])

    @overload
    def __getitem__(self, index: int) -> Frame: ...
    @overload
    def __getitem__(self, index: slice) -> list[Frame]: ...
    def __getitem__(self, index: int | slice) -> Frame | list[Frame]:
        if isinstance(index, slice):
            return [self(i) for i in range(*index.indices(len(self)))]
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        return self(index % len(self))

    def __iter__(self) -> Iterator[Frame]:
        return (self(i) for i in range(len(self)))

    def package_ids(self) -> set[str]:
        return {p["package_id"] for i in self.indices for p in self.dataset.records[i]["packages"]}

    def truths(self) -> list[list[PackageTruth]]:
        """Ground truth of every frame, without reading the images."""
        return [self.dataset.truth(i) for i in self.indices]

    def split(self, val_fraction: float, seed: int = 0) -> tuple[DirectoryFrames, DirectoryFrames]:
        """(train, validation) by package: no package or track id on both sides (`datasets.split`)."""
        from model_lifecycle.datasets.split import split_by_package

        records = [self.dataset.records[i] for i in self.indices]
        train, val = split_by_package(records, val_fraction, seed)
        path = self.dataset.path
        return (
            DirectoryFrames(path, [self.indices[i] for i in train]),
            DirectoryFrames(path, [self.indices[i] for i in val]),
        )

    def describe(self) -> dict[str, object]:
        meta = self.dataset.meta
        described: dict[str, object] = {
            "source": str(self.dataset.path),
            "format": meta.get("format"),
            "frames": len(self),
            "packages": sum(len(self.dataset.records[i]["packages"]) for i in self.indices),
        }
        if "seed" in meta:
            described["seed"] = meta["seed"]
        if "source" in meta:
            described["imported_from"] = meta["source"]
        if len(self) != len(self.dataset):
            described["subset_of"] = len(self.dataset)
        return described


def training_frames(seed: int = 1, damage_mix: dict[str, float] | None = None) -> SimulatedFrames:
    mix = TRAIN_DAMAGE_MIX if damage_mix is None else damage_mix
    return SimulatedFrames(seed, tuple(sorted(mix.items())))


def heldout_frames(
    n: int = DEFAULT_HELDOUT_FRAMES, seed: int = HELDOUT_SEED, drift: str | None = None
) -> list[Frame]:
    """The fixed evaluation set (default scene mix)."""
    fn = SimulatedFrames(seed, drift=drift)
    return [fn(i) for i in range(n)]


def calibration_images(n: int = 64, seed: int = CALIBRATION_SEED) -> list[np.ndarray]:
    """BGR frames for INT8 calibration, disjoint from the evaluation set."""
    fn = SimulatedFrames(seed)
    return [fn(i).image for i in range(n)]
