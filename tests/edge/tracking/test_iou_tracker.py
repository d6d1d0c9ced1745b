"""The IoU tracker keeps one id per moving package, bridges gaps and ends tracks that left."""

from __future__ import annotations

import numpy as np

from contract.frames import Box, Detection
from edge.tracking.iou import IouTracker, TrackState


def det(x: float, y: float = 50.0, w: float = 80.0, h: float = 50.0, score: float = 0.9) -> Detection:
    probs = np.array([0.9, 0.025, 0.025, 0.025, 0.025], dtype=np.float32)
    return Detection(Box(x, y, x + w, y + h), score, probs, np.ones(8, dtype=np.float32) / np.sqrt(8))


def test_a_package_moving_across_the_view_keeps_one_track_until_it_leaves():
    tracker = IouTracker("cam", min_hits=3, max_age=3)
    ids = set()
    ended = []
    for i in range(40):
        step = tracker.update(i, i / 30, [det(10 + 6.4 * i)] if i < 30 else [])
        ids.update(t.track_id for t, _ in step.matches)
        ended.extend(step.ended)
    assert len(ids) == 1
    assert len(ended) == 1 and ended[0].state is TrackState.ENDED
    assert ended[0].hits == 30 and ended[0].last_index == 29


def test_tracks_are_tentative_until_min_hits_and_a_single_blip_never_confirms():
    tracker = IouTracker("cam", min_hits=3, max_age=5)
    step = tracker.update(0, 0.0, [det(100), det(400)])
    assert all(t.state is TrackState.TENTATIVE for t, _ in step.matches)
    tracker.update(1, 0.03, [det(106)])  # the blip at 400 is gone: tentative tracks die on a miss
    step = tracker.update(2, 0.06, [det(112)])
    assert [t.state for t, _ in step.matches] == [TrackState.CONFIRMED]
    assert len(tracker.tracks) == 1


def test_velocity_prediction_bridges_frames_skipped_by_the_latest_policy():
    tracker = IouTracker("cam", min_hits=2, max_age=10)
    for i in range(5):
        tracker.update(i, i / 30, [det(10 + 12 * i)])
    # Four frames dropped: the box moved 60 px, less than its width, yet far from the last box.
    step = tracker.update(9, 9 / 30, [det(10 + 12 * 9)])
    assert len(step.matches) == 1 and step.matches[0][0].hits == 6


def test_a_lost_track_is_reacquired_within_max_age_and_ends_after_it():
    tracker = IouTracker("cam", min_hits=1, max_age=4)
    tracker.update(0, 0.0, [det(100)])
    assert tracker.update(1, 0.03, []).ended == []
    assert tracker.tracks[0].state is TrackState.LOST
    step = tracker.update(2, 0.06, [det(100)])
    assert step.matches[0][0].state is TrackState.CONFIRMED
    assert tracker.update(7, 0.2, []).ended[0].state is TrackState.ENDED


def test_two_packages_side_by_side_get_distinct_tracks():
    tracker = IouTracker("cam", min_hits=1)
    for i in range(10):
        step = tracker.update(i, i / 30, [det(10 + 6 * i, y=20), det(10 + 6 * i, y=200)])
    assert len({t.track_id for t, _ in step.matches}) == 2


def test_finish_ends_live_tracks_and_leaves_tentative_ones_unconfirmed():
    tracker = IouTracker("cam", min_hits=3)
    for i in range(5):
        tracker.update(i, i / 30, [det(10 + 6 * i)])
    tracker.update(5, 5 / 30, [det(10 + 6 * 5), det(500)])
    ended = tracker.finish()
    assert sorted(t.confirmed for t in ended) == [False, True]
    assert tracker.tracks == []
