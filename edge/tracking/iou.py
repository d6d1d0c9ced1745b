"""IoU tracker with a constant-velocity prediction and a tentative → confirmed → lost → ended lifecycle.

Packages on a conveyor move smoothly, so matching each detection to the track whose *predicted*
box overlaps it most is enough (SORT without the Kalman covariance). The prediction also bridges
frames skipped by the `latest` drop policy: velocity is per frame index, not per processed frame.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from contract.frames import Box, Detection


class TrackState(StrEnum):
    TENTATIVE = "tentative"
    """Seen fewer than `min_hits` times: not reported, dropped on the first miss."""
    CONFIRMED = "confirmed"
    LOST = "lost"
    """Confirmed but unmatched in recent frames; re-acquired if it reappears within `max_age`."""
    ENDED = "ended"


@dataclass
class Track:
    track_id: str
    box: Box
    first_index: int
    last_index: int
    first_time: float
    last_time: float
    state: TrackState = TrackState.TENTATIVE
    hits: int = 1
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4, dtype=np.float32))

    def predict(self, index: int) -> np.ndarray:
        return self.box.as_array() + self.velocity * float(index - self.last_index)

    @property
    def confirmed(self) -> bool:
        """True once the track has ever been confirmed (also when lost or ended after that)."""
        return self.state is not TrackState.TENTATIVE


@dataclass
class TrackerStep:
    """What one frame did: detections matched to tracks (new ones included) and tracks that ended."""

    matches: list[tuple[Track, Detection]]
    ended: list[Track]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (N, 4) and (M, 4) xyxy boxes."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)), dtype=np.float32)
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0).astype(np.float32)


def greedy_pairs(ious: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """(row, column) pairs by descending IoU, each row and column used once, IoU >= `threshold`:
    optimal enough for well-separated packages."""
    pairs: list[tuple[int, int]] = []
    rows: set[int] = set()
    cols: set[int] = set()
    for flat in np.argsort(-ious, axis=None, kind="stable"):
        i, j = divmod(int(flat), ious.shape[1])
        if ious[i, j] < threshold:
            break
        if i not in rows and j not in cols:
            rows.add(i)
            cols.add(j)
            pairs.append((i, j))
    return pairs


class IouTracker:
    """Tracks of one camera. Not thread-safe: one tracker per camera, fed in frame order."""

    def __init__(
        self,
        track_prefix: str,
        iou_threshold: float = 0.3,
        min_hits: int = 3,
        max_age: int = 10,
        velocity_smoothing: float = 0.5,
    ) -> None:
        self.track_prefix = track_prefix
        self.iou_threshold = iou_threshold
        self.min_hits = min_hits
        self.max_age = max_age
        self.velocity_smoothing = velocity_smoothing
        self._ids = itertools.count(1)
        self.tracks: list[Track] = []

    def update(self, index: int, timestamp: float, detections: list[Detection]) -> TrackerStep:
        """Match one frame's detections; frames must come in increasing `index` (gaps allowed)."""
        live = self.tracks
        predicted = np.array([t.predict(index) for t in live], dtype=np.float32).reshape(-1, 4)
        boxes = np.array([d.box.as_array() for d in detections], dtype=np.float32).reshape(-1, 4)
        ious = iou_matrix(predicted, boxes)
        pairs = greedy_pairs(ious, self.iou_threshold)
        matched_tracks = {ti for ti, _ in pairs}
        matched_dets = {di for _, di in pairs}
        matches: list[tuple[Track, Detection]] = []
        for ti, di in pairs:
            self._hit(live[ti], detections[di], index, timestamp)
            matches.append((live[ti], detections[di]))

        ended: list[Track] = []
        survivors: list[Track] = []
        for ti, track in enumerate(live):
            if ti in matched_tracks:
                survivors.append(track)
                continue
            gap = index - track.last_index
            if track.state is TrackState.TENTATIVE or gap > self.max_age:
                if track.state is not TrackState.TENTATIVE:
                    track.state = TrackState.ENDED
                ended.append(track)
            else:
                track.state = TrackState.LOST
                survivors.append(track)
        for di, det in enumerate(detections):
            if di not in matched_dets:
                track = Track(
                    track_id=f"{self.track_prefix}-{next(self._ids)}",
                    box=det.box,
                    first_index=index,
                    last_index=index,
                    first_time=timestamp,
                    last_time=timestamp,
                    state=TrackState.CONFIRMED if self.min_hits <= 1 else TrackState.TENTATIVE,
                )
                survivors.append(track)
                matches.append((track, det))
        self.tracks = survivors
        return TrackerStep(matches=matches, ended=ended)

    def finish(self) -> list[Track]:
        """End every live track (end of stream, shutdown); tentative ones are returned unconfirmed."""
        ended = self.tracks
        for track in ended:
            if track.state is not TrackState.TENTATIVE:
                track.state = TrackState.ENDED
        self.tracks = []
        return ended

    def _hit(self, track: Track, det: Detection, index: int, timestamp: float) -> None:
        gap = max(1, index - track.last_index)
        step = (det.box.as_array() - track.box.as_array()) / gap
        a = self.velocity_smoothing
        track.velocity = (step if track.hits == 1 else a * step + (1 - a) * track.velocity).astype(np.float32)
        track.box = det.box
        track.last_index = index
        track.last_time = timestamp
        track.hits += 1
        if (
            track.state is TrackState.TENTATIVE and track.hits >= self.min_hits
        ) or track.state is TrackState.LOST:
            track.state = TrackState.CONFIRMED
