"""Record the simulator to a video file plus a ground-truth sidecar, for `file://` sources."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import cv2

from simulator import ConveyorSimulator, DriftConfig, SimConfig
from simulator.records import frame_record, sidecar_path

_FOURCC = {".mp4": "mp4v", ".avi": "MJPG"}


def write_video(
    path: Path,
    seconds: float,
    seed: int,
    *,
    config: SimConfig | None = None,
    drift: str | DriftConfig | None = None,
    camera_id: str = "synthetic",
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write `seconds` of one continuous scene to `path` (.mp4: mp4v, .avi: MJPG) and its sidecar.

    Returns the number of frames. The sidecar (`clip.truth.jsonl`) holds one record per frame.
    """
    path = Path(path)
    config = config or SimConfig()
    fourcc = _FOURCC.get(path.suffix.lower())
    if fourcc is None:
        raise ValueError(f"{path}: video must end in one of {sorted(_FOURCC)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    size = (config.width, config.height)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), config.fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"{path}: OpenCV cannot open a {fourcc} writer")
    sim = ConveyorSimulator(config, seed, camera_id=camera_id, drift=drift)
    n = max(1, round(seconds * config.fps))
    try:
        with sidecar_path(path).open("w") as side:
            for frame in sim.frames(n):
                writer.write(frame.image)
                side.write(json.dumps(frame_record(frame)) + "\n")
                if progress is not None:
                    progress(1)
    finally:
        writer.release()
    return n
