"""Building the `DetectionEvent` / `AnomalyFlag` protobufs the edge ships to the centre."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from contract.frames import Box, Detection
from contract.proto import warehouse_vision_pb2 as pb
from contract.vocabulary import CONDITIONS, STAGES


@dataclass(frozen=True)
class ModelInfo:
    """Which model produced a result; recorded on every event."""

    version: str
    engine: str
    precision: str
    fallback: bool = False
    provisional: bool = False
    """A fallback result whose batch the primary is still working on: its late answer replaces it."""


@dataclass
class FrameContext:
    """Everything about one processed frame that ends up on the events it produces."""

    facility_id: str
    camera_id: str
    frame_index: int
    timestamp: float
    """The frame's capture time (seconds since the epoch), the events' event_time."""
    model: ModelInfo
    timings: dict[str, float] = field(default_factory=dict)
    """Milliseconds per stage (keys from STAGES); decide/publish/end-to-end are added later."""


def timestamp(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(round(seconds * 1e9))
    return ts


def condition_value(name: str) -> pb.Condition.ValueType:
    """Proto enum value of a condition name (enum values are the CONDITIONS order + 1)."""
    return pb.Condition.ValueType(CONDITIONS.index(name) + 1)


def probabilities(probs: np.ndarray) -> pb.ConditionProbabilities:
    return pb.ConditionProbabilities(**{name: float(p) for name, p in zip(CONDITIONS, probs, strict=True)})


def bbox(box: Box) -> pb.BoundingBox:
    return pb.BoundingBox(x1=box.x1, y1=box.y1, x2=box.x2, y2=box.y2)


def new_event(kind: pb.EventKind.ValueType, ctx: FrameContext, track_id: str) -> pb.DetectionEvent:
    """An event with its identity, model and timing fields set; callers add the observation."""
    return pb.DetectionEvent(
        schema_version=pb.SCHEMA_VERSION_1,
        event_id=str(uuid.uuid4()),
        kind=kind,
        facility_id=ctx.facility_id,
        camera_id=ctx.camera_id,
        track_id=track_id,
        event_time=timestamp(ctx.timestamp),
        model_version=ctx.model.version,
        engine=ctx.model.engine,
        precision=ctx.model.precision,
        fallback=ctx.model.fallback,
        frame_index=ctx.frame_index,
        timings=pb.StageTimings(**{k: v for k, v in ctx.timings.items() if k in STAGES}),
    )


def superseding(
    old: pb.DetectionEvent, det: Detection, model: ModelInfo, zone: str, infer_ms: float
) -> pb.DetectionEvent:
    """The primary's detection event for the frame and track of the fallback's `old` one, naming
    it in `supersedes`: same identity and event time, the primary's observation and model."""
    event = pb.DetectionEvent()
    event.CopyFrom(old)
    event.event_id = str(uuid.uuid4())
    event.model_version, event.engine, event.precision = model.version, model.engine, model.precision
    event.fallback = False
    event.bbox.CopyFrom(bbox(det.box))
    event.detection_confidence = det.score
    event.condition = condition_value(det.condition)
    event.condition_probabilities.CopyFrom(probabilities(det.condition_probs))
    event.condition_confidence = float(det.condition_probs.max())
    event.zone = zone
    event.timings.infer_ms = infer_ms
    event.supersedes[:] = [old.event_id]
    return event


def anomaly(
    event: pb.DetectionEvent,
    kind: str,
    severity: pb.Severity.ValueType,
    score: float,
    evidence: dict[str, object],
    flagged_at: float,
) -> pb.AnomalyFlag:
    """A flag whose id is derived from the event id, so a replayed event carries the same flag ids."""
    return pb.AnomalyFlag(
        anomaly_id=f"{event.event_id}:{kind}",
        kind=kind,
        severity=severity,
        score=float(score),
        evidence_json=json.dumps(evidence, sort_keys=True),
        source="edge",
        event_id=event.event_id,
        facility_id=event.facility_id,
        camera_id=event.camera_id,
        package_id=event.package_id,
        zone=event.zone,
        flagged_at=timestamp(flagged_at),
    )


def has_anomalies(event: pb.DetectionEvent) -> bool:
    return len(event.anomalies) > 0
