"""One decision per package track, sampled per-frame detections, and the edge anomaly flags.

Identity comes from an identity reader (:mod:`edge.decisions.identity`): each track takes the
identity read most often over its frames; without a reader the package id is the track id and the
SKU is unknown.

Expected zone: a SKU's route from the camera's `routes` in edge.yaml when one matches, else the
one the identity reader gave, else none and `misplaced` is not evaluated for that track.
"""

from __future__ import annotations

import fnmatch
import random
from collections import Counter
from dataclasses import dataclass, field, replace

import numpy as np

from contract.frames import Box, Detection, Frame, PackageIdentity
from contract.proto import warehouse_vision_pb2 as pb
from contract.vocabulary import STAGES
from edge.config import DecisionConfig
from edge.decisions.events import (
    FrameContext,
    ModelInfo,
    anomaly,
    bbox,
    condition_value,
    new_event,
    probabilities,
    superseding,
    timestamp,
)
from edge.decisions.identity import IdentityReader
from edge.decisions.references import SkuReferences
from edge.decisions.smoothing import DirichletSmoother
from edge.decisions.zones import ZoneMap
from edge.tracking.iou import Track, greedy_pairs, iou_matrix

SAME_PACKAGE_IOU = 0.3
"""Overlap above which a primary and a fallback box of one frame are the same package."""


@dataclass(frozen=True)
class Provisional:
    """One track's fallback observation in a frame whose primary result is still to come."""

    track_id: str
    det: Detection
    update: int
    """Which of the track's smoother updates it was."""
    zone: str
    event: pb.DetectionEvent | None
    """Its sampled detection event, if it was sampled (that is what the primary's supersedes)."""


@dataclass
class TrackEvidence:
    """What a track has accumulated over its frames."""

    smoother: DirichletSmoother
    first_seen: float
    zone_votes: Counter[str] = field(default_factory=Counter)
    identity_votes: Counter[PackageIdentity] = field(default_factory=Counter)
    embedding_sum: np.ndarray | None = None
    embedding_model: str = ""
    """The model whose embedding space `embedding_sum` is in (models do not share one)."""
    fallback_frames: int = 0
    last_box: Box | None = None
    last_ctx: FrameContext | None = None

    def identity(self) -> PackageIdentity | None:
        """The identity read most often, if any."""
        return self.identity_votes.most_common(1)[0][0] if self.identity_votes else None

    def add_embedding(self, weighted: np.ndarray, model: ModelInfo) -> None:
        """Sum appearance evidence of one model only: the primary's wins over the fallback's, and
        after a hot-swap the new model's replaces the old one's (their spaces differ, even in size)."""
        if self.embedding_sum is not None and model.version == self.embedding_model:
            self.embedding_sum = self.embedding_sum + weighted
        elif self.embedding_sum is None or not model.fallback:
            self.embedding_sum, self.embedding_model = weighted, model.version

    def revise(self, old: Provisional, det: Detection, zone: str, ctx: FrameContext) -> None:
        """Put the primary's late result for a frame in place of the fallback's `old` one, so the
        track's decision is made on the primary's evidence (the tracker keeps the fallback's box)."""
        self.smoother.replace(
            old.update, (old.det.condition_probs, old.det.score), (det.condition_probs, det.score)
        )
        self.zone_votes[old.zone] -= 1
        if self.zone_votes[old.zone] <= 0:
            del self.zone_votes[old.zone]
        self.zone_votes[zone] += 1
        self.add_embedding(det.embedding * det.score, ctx.model)
        self.fallback_frames -= 1
        if self.last_ctx is not None and self.last_ctx.frame_index == ctx.frame_index:
            self.last_box, self.last_ctx = det.box, ctx

    def embedding(self) -> np.ndarray | None:
        if self.embedding_sum is None:
            return None
        return (self.embedding_sum / max(float(np.linalg.norm(self.embedding_sum)), 1e-12)).astype(np.float32)


class Decider:
    """Turns one camera's tracked detections into events. One instance per camera, frame order."""

    def __init__(
        self,
        config: DecisionConfig,
        zones: ZoneMap,
        routes: dict[str, str],
        references: SkuReferences | None,
        rng: random.Random | None = None,
        identity: IdentityReader | None = None,
    ) -> None:
        self.config = config
        self.identity = identity
        self.zones = zones
        self.routes = routes
        self.references = references
        self._rng = rng or random.Random()
        self._evidence: dict[str, TrackEvidence] = {}
        self._last_ctx: FrameContext | None = None
        self._provisional: dict[int, tuple[FrameContext, list[Provisional]]] = {}
        """Frames the fallback answered while the primary still works on them, by frame index."""

    def last_context(self) -> FrameContext | None:
        """The most recent frame observed (used to stamp decisions flushed at shutdown)."""
        return self._last_ctx

    def observe(
        self, ctx: FrameContext, matches: list[tuple[Track, Detection]], frame: Frame
    ) -> list[pb.DetectionEvent]:
        """Fold a frame's matched detections into their tracks; returns the sampled detection events."""
        self._last_ctx = ctx
        sampled: list[pb.DetectionEvent] = []
        for track, det in matches:
            ev = self._evidence.get(track.track_id)
            if ev is None:
                ev = self._evidence[track.track_id] = TrackEvidence(
                    DirichletSmoother(self.config.smoothing_prior, self.config.smoothing_discount),
                    first_seen=ctx.timestamp,
                )
            update = ev.smoother.frames
            ev.smoother.update(det.condition_probs, det.score)
            zone = self.zones.locate(det.box)
            ev.zone_votes[zone] += 1
            ev.add_embedding(det.embedding * det.score, ctx.model)
            ev.fallback_frames += int(ctx.model.fallback)
            ev.last_box, ev.last_ctx = det.box, ctx
            if self.identity is not None and (who := self.identity.read(frame, det.box)) is not None:
                ev.identity_votes[who] += 1
            event = None
            if track.confirmed and self._rng.random() < self.config.detection_sample_rate:
                event = self._detection_event(ctx, track, det, ev)
                sampled.append(event)
            if ctx.model.provisional:
                entry = self._provisional.setdefault(ctx.frame_index, (ctx, []))
                entry[1].append(Provisional(track.track_id, det, update, zone, event))
        return sampled

    def supersede(
        self, frame_index: int, detections: list[Detection], model: ModelInfo, infer_ms: float
    ) -> list[pb.DetectionEvent]:
        """The primary's late result for a frame the fallback answered: each fallback detection the
        primary also found (same package: boxes overlap) has its evidence replaced in a track not
        decided yet, and its sampled event superseded by a primary-made one (returned). A fallback
        detection the primary did not confirm stays the provisional answer; a package only the
        primary saw is left out (the tracker never saw it in this frame)."""
        entry = self._provisional.pop(frame_index, None)
        if entry is None:
            return []
        ctx, records = entry
        late = replace(ctx, model=model, timings={**ctx.timings, "infer_ms": infer_ms})
        events = []
        for old, det in _same_packages(records, detections):
            zone = self.zones.locate(det.box)
            ev = self._evidence.get(old.track_id)
            if ev is not None:
                ev.revise(old, det, zone, late)
            if old.event is not None:
                events.append(superseding(old.event, det, model, zone, infer_ms))
        return events

    def forget(self, frame_index: int) -> None:
        """No primary result will come for this frame (it failed): its fallback answer stays."""
        self._provisional.pop(frame_index, None)

    def decide(self, track: Track, now: FrameContext) -> pb.DetectionEvent | None:
        """The decision for a track that left the view (noticed while processing frame `now`).

        Event time, frame and model are those of the track's last observation; the stage
        timings are those of `now`, the frame whose processing emitted the decision.
        None for tracks that were never confirmed."""
        ev = self._evidence.pop(track.track_id, None)
        if ev is None or not track.confirmed or ev.last_ctx is None or ev.last_box is None:
            return None
        s = ev.smoother
        event = new_event(pb.EVENT_KIND_DECISION, ev.last_ctx, track.track_id)
        event.timings.CopyFrom(pb.StageTimings(**{k: v for k, v in now.timings.items() if k in STAGES}))
        event.fallback = ev.fallback_frames * 2 > s.frames
        who = ev.identity() or PackageIdentity(track.track_id, "")
        package_id, sku = who.package_id, who.sku
        event.package_id, event.sku = package_id, sku
        event.bbox.CopyFrom(bbox(ev.last_box))
        event.detection_confidence = s.detection_score
        event.condition = condition_value(s.condition)
        event.condition_probabilities.CopyFrom(probabilities(s.probs))
        event.condition_confidence = s.confidence
        observed = [z for z, _ in ev.zone_votes.most_common() if z]
        event.zone = observed[0] if observed else ""
        event.expected_zone = self._expected_zone(sku, who.expected_zone)
        embedding = ev.embedding()
        if embedding is not None:
            event.embedding.extend(embedding.tolist())
        event.frames_observed = s.frames
        event.first_seen.CopyFrom(timestamp(ev.first_seen))
        self._flag(event, s, embedding)
        return event

    def _expected_zone(self, sku: str, read_expected: str) -> str:
        if sku:
            for pattern, zone in self.routes.items():
                if fnmatch.fnmatchcase(sku, pattern):
                    return zone
        return read_expected

    def _flag(self, event: pb.DetectionEvent, s: DirichletSmoother, embedding: np.ndarray | None) -> None:
        # A flag is raised on its decision and carries that decision's time: a recorded or replayed
        # stream is flagged when it shows the package (and lands in the same day), not when processed.
        cfg, now = self.config, event.event_time.ToMicroseconds() / 1e6
        flags = []
        if s.p_damaged > cfg.damage_threshold:
            severity = pb.SEVERITY_CRITICAL if s.p_damaged >= cfg.critical_damage else pb.SEVERITY_WARNING
            evidence = {"p_damaged": round(s.p_damaged, 4), "condition": s.condition, "frames": s.frames}
            flags.append(anomaly(event, "damaged", severity, s.p_damaged, evidence, now))
        if event.zone and event.expected_zone and event.zone != event.expected_zone:
            evidence = {"zone": event.zone, "expected_zone": event.expected_zone, "sku": event.sku}
            flags.append(anomaly(event, "misplaced", pb.SEVERITY_WARNING, 1.0, evidence, now))
        low, high = cfg.hard_example_band
        if low <= s.confidence <= high:
            event.hard_example = True
            evidence = {"condition_confidence": round(s.confidence, 4), "band": [low, high]}
            flags.append(anomaly(event, "low_confidence", pb.SEVERITY_INFO, s.confidence, evidence, now))
        unknown = False
        if embedding is not None and event.sku and self.references is not None:
            ref = self.references.lookup(event.model_version, event.sku, embedding.shape[-1])
            if ref is not None:
                distance = ref.distance(embedding)
                if distance > cfg.unknown_distance:
                    unknown = True
                    evidence = {
                        "distance": round(distance, 4),
                        "reference_count": ref.count,
                        "sku": event.sku,
                    }
                    flags.append(
                        anomaly(event, "unknown_appearance", pb.SEVERITY_WARNING, distance, evidence, now)
                    )
            if not unknown and s.condition == "ok" and s.confidence >= cfg.reference_min_confidence:
                self.references.learn(event.model_version, event.sku, embedding)
        event.anomalies.extend(flags)

    def _detection_event(
        self, ctx: FrameContext, track: Track, det: Detection, ev: TrackEvidence
    ) -> pb.DetectionEvent:
        event = new_event(pb.EVENT_KIND_DETECTION, ctx, track.track_id)
        who = ev.identity() or PackageIdentity(track.track_id, "")
        package_id, sku = who.package_id, who.sku
        event.package_id, event.sku = package_id, sku
        event.bbox.CopyFrom(bbox(det.box))
        event.detection_confidence = det.score
        event.condition = condition_value(det.condition)
        event.condition_probabilities.CopyFrom(probabilities(det.condition_probs))
        event.condition_confidence = float(det.condition_probs.max())
        event.zone = self.zones.locate(det.box)
        event.frames_observed = ev.smoother.frames
        event.first_seen.CopyFrom(timestamp(ev.first_seen))
        return event


def _same_packages(
    records: list[Provisional], detections: list[Detection]
) -> list[tuple[Provisional, Detection]]:
    """Pair the fallback's and the primary's detections of one frame by box overlap."""
    a = np.array([r.det.box.as_array() for r in records], dtype=np.float32).reshape(-1, 4)
    b = np.array([d.box.as_array() for d in detections], dtype=np.float32).reshape(-1, 4)
    return [(records[i], detections[j]) for i, j in greedy_pairs(iou_matrix(a, b), SAME_PACKAGE_IOU)]
