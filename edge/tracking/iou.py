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
    corners: np.ndarray = field(init=False, repr=False)
    """`box` as float32 (x1, y1, x2, y2), kept with it (the tracker reads it every frame)."""

    def __post_init__(self) -> None:
        self.corners = self.box.as_array()

    def predict(self, index: int) -> np.ndarray:
        return self.corners + self.velocity * float(index - self.last_index)

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
    # np.maximum(x, 0), not np.clip: the same values at a fraction of the call's cost (per frame)
    ax1, ay1, ax2, ay2 = a.T[:, :, None]
    bx1, by1, bx2, by2 = b.T[:, None, :]
    inter = np.maximum(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), 0) * np.maximum(
        np.minimum(ay2, by2) - np.maximum(ay1, by1), 0
    )
    area_a = np.maximum(ax2 - ax1, 0) * np.maximum(ay2 - ay1, 0)
    area_b = np.maximum(bx2 - bx1, 0) * np.maximum(by2 - by1, 0)
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0).astype(np.float32)


def greedy_pairs(ious: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """(row, column) pairs by descending IoU, each row and column used once, IoU >= `threshold`:
    optimal enough for well-separated packages."""
    pairs: list[tuple[int, int]] = []
    rows: set[int] = set()
    cols: set[int] = set()
    order = np.argsort(-ious, axis=None, kind="stable")
    above = int(np.count_nonzero(ious >= threshold))  # the first `above` of `order`
    for flat in order[:above].tolist():
        i, j = divmod(flat, ious.shape[1])
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
        boxes = np.array(
            [(b.x1, b.y1, b.x2, b.y2) for d in detections for b in (d.box,)], dtype=np.float32
        ).reshape(-1, 4)
        pairs: list[tuple[int, int]] = []
        matches: list[tuple[Track, Detection]] = []
        if live and detections:  # array operations over all tracks, not a few per track
            corners = np.array([t.corners for t in live])
            velocity = np.array([t.velocity for t in live])
            gaps = np.array([index - t.last_index for t in live], dtype=np.float32)
            pairs = greedy_pairs(iou_matrix(corners + velocity * gaps[:, None], boxes), self.iou_threshold)
            if pairs:
                rows, cols = (list(ix) for ix in zip(*pairs, strict=True))
                step = (boxes[cols] - corners[rows]) / np.maximum(gaps[rows], 1)[:, None]
                a = self.velocity_smoothing
                first = np.array([live[t].hits == 1 for t in rows])[:, None]
                moved = np.where(first, step, a * step + (1 - a) * velocity[rows]).astype(np.float32)
                for k, (t, d) in enumerate(pairs):
                    self._hit(live[t], detections[d], boxes[d], moved[k], index, timestamp)
                    matches.append((live[t], detections[d]))
        matched_tracks = {ti for ti, _ in pairs}
        matched_dets = {di for _, di in pairs}

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

    def _hit(
        self,
        track: Track,
        det: Detection,
        corners: np.ndarray,
        velocity: np.ndarray,
        index: int,
        timestamp: float,
    ) -> None:
        """`velocity`: the new per-frame motion (the step since the last hit, smoothed after the first)."""
        track.velocity = velocity
        track.box = det.box
        track.corners = corners
        track.last_index = index
        track.last_time = timestamp
        track.hits += 1
        if (
            track.state is TrackState.TENTATIVE and track.hits >= self.min_hits
        ) or track.state is TrackState.LOST:
            track.state = TrackState.CONFIRMED
