"""Procedurally rendered conveyor camera: training data and a stand-in camera for the edge.

`ConveyorSimulator(SimConfig(), seed).frames()` gives a continuous scene with ground truth;
`render_iid(i)` gives independent frames for datasets; `DriftConfig` / `PRESETS` shift the scene.
"""

from simulator.config import SIM_EPOCH, SimConfig
from simulator.conveyor import MIN_VISIBLE, ConveyorSimulator
from simulator.drift import PRESETS, DriftConfig, resolve_drift

__all__ = [
    "MIN_VISIBLE",
    "PRESETS",
    "SIM_EPOCH",
    "ConveyorSimulator",
    "DriftConfig",
    "SimConfig",
    "resolve_drift",
]
