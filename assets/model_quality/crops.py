"""Image crops for verification and hard-example tasks.

The edge ships no pixels: an event names its camera, its time and its box. Pixels can be had
again only where the camera is the conveyor simulator, which renders any frame of its scene
deterministically. ``cameras.source_uri`` is then the edge's own camera URI
(``synthetic://seed=N&fps=F&drift=PRESET&start_time=EPOCH_S…``, parsed by
``edge.sources.factory``); with ``start_time`` in it the frame index of an event is
``round((event_time - start_time) × fps)``. A camera streamed in several sessions (the demo's
one burst per simulated day) lists one such URI per session, separated by whitespace; each
session's frames come from the URI with the latest ``start_time`` at or before the event, and
frame indices count on the camera's timeline from the first session's start. For real cameras,
or a synthetic one started at "now" (no ``start_time``), the task carries the crop reference
only (camera, time, box) and a reviewer pulls the clip from the facility's video archive.
"""

from dataclasses import dataclass, replace
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from contract.frames import Frame

CROP_MARGIN = 0.15
"""Context around the box, as a share of its size, so a reviewer sees the package's edges."""


@dataclass(frozen=True)
class Session:
    """One synthetic stream of a camera: its URI and the epoch second of its frame 0."""

    uri: str
    start_time: float
    fps: float


@dataclass(frozen=True)
class SyntheticCamera:
    camera_id: str
    uri: str
    start_time: float
    fps: float
    sessions: tuple[Session, ...] = ()
    """Every session, oldest first (empty: the single session ``uri``)."""

    def frame_index(self, when: datetime) -> int:
        """Index of the frame shown at ``when`` on the camera's timeline (frame 0: first session start)."""
        return max(0, round((when.timestamp() - self.start_time) * self.fps))

    def render(self, index: int) -> Frame:
        """Frame ``index`` of the timeline, rendered by the session that was streaming then."""
        at = self.start_time + index / self.fps
        sessions = self.sessions or (Session(self.uri, self.start_time, self.fps),)
        session = sessions[0]
        for candidate in sessions[1:]:
            if candidate.start_time <= at + 0.5 / candidate.fps:
                session = candidate
        local = max(0, round((at - session.start_time) * session.fps))
        frame = _simulator(self.camera_id, session.uri).render(local)
        return replace(frame, index=index)


def _source(camera_id: str, uri: str) -> Any:
    from edge.sources.factory import open_source

    return open_source(uri, camera_id, realtime=False)


def _session(camera_id: str, uri: str) -> Session | None:
    try:
        source = _source(camera_id, uri)
    except ValueError as exc:
        raise ValueError(f"camera {camera_id}: {exc}") from None
    if source.start_time is None:
        return None
    return Session(uri, float(source.start_time), float(source.config.fps))


def parse_synthetic_uri(camera_id: str, uri: str | None) -> SyntheticCamera | None:
    """The simulator behind a camera, or None when its frames cannot be re-rendered.

    ``uri`` is one camera URI or several whitespace-separated synthetic session URIs, each with
    its ``start_time`` (a ValueError names a session without one).
    """
    parts = (uri or "").split()
    if not parts or not all(p.lower().startswith("synthetic:") for p in parts):
        return None
    if len(parts) == 1:
        single = _session(camera_id, parts[0])
        return (
            None if single is None else SyntheticCamera(camera_id, single.uri, single.start_time, single.fps)
        )
    sessions = []
    for part in parts:
        session = _session(camera_id, part)
        if session is None:
            raise ValueError(f"camera {camera_id}: session {part!r} needs a start_time")
        sessions.append(session)
    sessions.sort(key=lambda s: s.start_time)
    first = sessions[0]
    return SyntheticCamera(camera_id, uri or "", first.start_time, first.fps, tuple(sessions))


@lru_cache(maxsize=16)
def _simulator(camera_id: str, uri: str) -> Any:
    from simulator.conveyor import ConveyorSimulator

    source = _source(camera_id, uri)
    return ConveyorSimulator(
        source.config, source.seed, camera_id=camera_id, start_time=source.start_time, drift=source.drift
    )


def crop(
    image: np.ndarray, bbox: tuple[float, float, float, float], margin: float = CROP_MARGIN
) -> np.ndarray:
    """The box plus a margin, clipped to the image."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = bbox
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    left, top = max(0, int(x1 - mx)), max(0, int(y1 - my))
    right, bottom = min(w, int(np.ceil(x2 + mx))), min(h, int(np.ceil(y2 + my)))
    if right <= left or bottom <= top:
        raise ValueError(f"box {bbox} lies outside the {w}x{h} frame")
    return image[top:bottom, left:right]


def write_crop(
    camera: SyntheticCamera, when: datetime, bbox: tuple[float, float, float, float], path: Path
) -> Frame:
    """Render the event's frame, cut the package out and write it as a PNG; returns the frame."""
    frame = camera.render(camera.frame_index(when))
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), crop(frame.image, bbox)):
        raise OSError(f"could not write crop {path}")
    return frame
