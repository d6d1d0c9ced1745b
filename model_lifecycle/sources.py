"""Where training and evaluation frames come from: the conveyor simulator's i.i.d. frames.

The held-out evaluation set is fixed by `HELDOUT_SEED` (frames 0..n-1 of `render_iid`, default
simulator config and damage mix); INT8 calibration uses `CALIBRATION_SEED` so it never sees the
evaluation frames; training uses its own seed (1 by default), so the three never overlap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from contract.frames import Frame

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


class DirectoryFrames:
    """`index -> Frame` over a dataset written by `wv data` (annotations.jsonl + images)."""

    def __init__(self, path: Path | str) -> None:
        from simulator.dataset import ImageDataset

        self.dataset = ImageDataset(Path(path))

    def __len__(self) -> int:
        return len(self.dataset)

    def __call__(self, index: int) -> Frame:
        return self.dataset.frame(index)

    def describe(self) -> dict[str, object]:
        meta = self.dataset.meta
        return {"source": str(self.dataset.path), "seed": meta.get("seed"), "frames": len(self)}


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
