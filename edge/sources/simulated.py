"""The conveyor simulator as a camera: live-paced for the edge runtime or as fast as possible."""

from __future__ import annotations

import time

from contract.frames import Frame
from edge.sources.base import EndOfStream, FrameSource, Pacer
from simulator import ConveyorSimulator, DriftConfig, SimConfig


class SyntheticSource(FrameSource):
    """Frames of one continuous simulated scene, with ground truth attached."""

    def __init__(
        self,
        camera_id: str,
        *,
        config: SimConfig | None = None,
        seed: int = 0,
        drift: str | DriftConfig | None = None,
        realtime: bool = True,
        speed: float = 1.0,
        frames: int | None = None,
        start_time: float | None = None,
        name: str = "synthetic://",
    ) -> None:
        super().__init__(name, camera_id)
        self.config = config or SimConfig()
        self.seed = seed
        self.drift = drift
        self.realtime = realtime
        self.speed = speed
        """Clock acceleration when paced: 10 delivers ten simulated seconds per wall second."""
        self.frames = frames
        self.start_time = start_time
        self._sim: ConveyorSimulator | None = None
        self._pacer: Pacer | None = None
        self._index = 0

    def _open(self) -> None:
        start = time.time() if self.start_time is None else self.start_time
        self._sim = ConveyorSimulator(
            self.config, self.seed, camera_id=self.camera_id, start_time=start, drift=self.drift
        )
        self._pacer = Pacer(self.config.fps, self.speed) if self.realtime else None
        self._index = 0

    def _read(self) -> Frame:
        assert self._sim is not None
        if self.frames is not None and self._index >= self.frames:
            raise EndOfStream(f"{self.name}: all {self.frames} frames delivered")
        index = self._index
        self._index += 1
        if self._pacer is not None:
            self._pacer.wait(index)
        return self._sim.render(index)

    def _close(self) -> None:
        self._sim = None
