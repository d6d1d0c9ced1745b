"""The late primary result of frames the fallback answered: the decider swaps the fallback's
evidence for the primary's in tracks not decided yet, and supersedes its sampled events."""

from __future__ import annotations

import numpy as np
import pytest

from contract.frames import Box, Detection, Frame
from contract.proto import warehouse_vision_pb2 as pb
from edge.config import DecisionConfig
from edge.decisions.decider import Decider
from edge.decisions.events import FrameContext, ModelInfo
from edge.decisions.zones import Zone, ZoneMap
from edge.tracking.iou import IouTracker

LANES = ZoneMap([Zone("lane-a", np.array([[0, 0], [640, 0], [640, 240], [0, 240]], dtype=np.float32))])
PRIMARY = ModelInfo("v1", "onnxruntime", "int8")
FALLBACK = ModelInfo("fallback", "onnxruntime", "fp32", fallback=True, provisional=True)
OK = np.array([0.96, 0.01, 0.01, 0.01, 0.01], dtype=np.float32)
CRUSHED = np.array([0.03, 0.94, 0.01, 0.01, 0.01], dtype=np.float32)
FRAMES = 12


def box(i: int) -> Box:
    return Box(10 + 5 * i, 30, 90 + 5 * i, 80)


def primary_det(i: int) -> Detection:
    return Detection(box(i), 0.9, OK, np.eye(8, dtype=np.float32)[0])


def fallback_det(i: int) -> Detection:
    """The fallback sees the package slightly shifted, calls it crushed, in its own embedding space."""
    b = box(i)
    return Detection(Box(b.x1 + 2, b.y1, b.x2 + 2, b.y2), 0.8, CRUSHED, np.ones(4, dtype=np.float32) / 2)


class Camera:
    """One camera's tracker and decider fed frame by frame, as the pipeline does."""

    def __init__(self) -> None:
        cfg = DecisionConfig(
            hard_example_band=(0.65, 0.85), detection_sample_rate=1.0, smoothing_discount=0.9
        )
        self.decider = Decider(cfg, LANES, {}, None)
        self.tracker = IouTracker("cam", min_hits=3, max_age=2)
        self.events: list[pb.DetectionEvent] = []

    def frame(self, i: int, model: ModelInfo, dets: list[Detection]) -> None:
        ctx = FrameContext("FAC-1", "cam-1", i, 1_700_000_000 + i / 30, model, {"infer_ms": 5.0})
        step = self.tracker.update(i, ctx.timestamp, dets)
        self.events += self.decider.observe(
            ctx, step.matches, Frame("cam-1", i, ctx.timestamp, np.zeros((4, 4, 3)))
        )
        self.events += [e for t in step.ended if (e := self.decider.decide(t, ctx)) is not None]

    def run(self, fallback_frames: range, settle_after: int) -> list[pb.DetectionEvent]:
        """Frames 0..FRAMES-1 (then a few empty ones); the fallback answers `fallback_frames` and their
        primary results arrive after frame `settle_after` was processed."""
        for i in range(FRAMES + 4):
            if i < FRAMES:
                fallback = i in fallback_frames
                self.frame(
                    i, FALLBACK if fallback else PRIMARY, [fallback_det(i) if fallback else primary_det(i)]
                )
            else:
                self.frame(i, PRIMARY, [])
            if i == settle_after:
                for j in fallback_frames:
                    self.events += self.decider.supersede(j, [primary_det(j)], PRIMARY, 61.0)
        return self.events


def decision(events: list[pb.DetectionEvent]) -> pb.DetectionEvent:
    (d,) = [e for e in events if e.kind == pb.EVENT_KIND_DECISION]
    return d


def test_a_decision_after_the_late_primary_result_rests_on_the_primary_evidence_exactly():
    reference = decision(Camera().run(range(0), settle_after=-1))  # the primary answered every frame
    events = Camera().run(range(0, 8), settle_after=8)  # 8 frames by the fallback, settled before the end
    d = decision(events)
    assert d.condition == pb.CONDITION_OK and not d.fallback and d.model_version == "v1"
    got = [d.condition_probabilities.ok, d.condition_probabilities.crushed, d.condition_confidence]
    want = [
        reference.condition_probabilities.ok,
        reference.condition_probabilities.crushed,
        reference.condition_confidence,
    ]
    assert got == pytest.approx(want, abs=1e-5)  # the swap is exact under the discount
    assert d.detection_confidence == pytest.approx(reference.detection_confidence, abs=1e-5)
    assert list(d.embedding) == pytest.approx(
        list(reference.embedding)
    )  # the primary's space, not the fallback's


def test_the_fallback_sampled_events_are_superseded_by_primary_made_ones_of_the_same_frame_and_track():
    events = Camera().run(range(0, 8), settle_after=8)
    detections = [e for e in events if e.kind == pb.EVENT_KIND_DETECTION]
    provisional = {e.event_id: e for e in detections if e.fallback}
    superseding = [e for e in detections if e.supersedes]
    assert provisional and len(superseding) == len(provisional)  # every sampled fallback event replaced
    for new in superseding:
        (old_id,) = new.supersedes
        old = provisional[old_id]
        assert (new.event_time, new.track_id, new.frame_index) == (
            old.event_time,
            old.track_id,
            old.frame_index,
        )
        assert (new.model_version, new.fallback, new.condition) == ("v1", False, pb.CONDITION_OK)
        assert old.model_version == "fallback" and old.condition == pb.CONDITION_CRUSHED
        assert new.bbox.x1 == box(new.frame_index).x1 and new.timings.infer_ms == 61.0
    assert len({e.event_id for e in events}) == len(events)


def test_a_track_decided_before_the_primary_answered_keeps_the_fallback_decision():
    events = Camera().run(range(4, FRAMES), settle_after=FRAMES + 3)  # settled after the track ended
    d = decision(events)
    assert d.fallback and d.model_version == "fallback" and d.condition == pb.CONDITION_CRUSHED
    assert sum(1 for e in events if e.supersedes) == 8  # its detection events are still superseded


def test_a_fallback_detection_the_primary_did_not_confirm_stays_and_a_failed_primary_is_forgotten():
    cam = Camera()
    for i in range(3):
        cam.frame(i, FALLBACK, [fallback_det(i)])
    assert cam.decider.supersede(0, [], PRIMARY, 50.0) == []  # the primary saw nothing there
    far = Detection(Box(400, 150, 460, 200), 0.9, OK, np.eye(8, dtype=np.float32)[0])
    assert cam.decider.supersede(1, [far], PRIMARY, 50.0) == []  # another package: not this one's
    cam.decider.forget(2)
    assert cam.decider.supersede(2, [primary_det(2)], PRIMARY, 50.0) == []  # nothing recorded any more
