"""Event streams for tests and benchmarks: valid, unique ``DetectionEvent`` s with realistic defaults.

Scaffolding, not production code: the edge builds its events from real decisions
(``edge.decisions.events``); this factory stands in for a fleet of edges when a test or a
benchmark needs thousands of plausible events without running the model.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from contract.events import CONDITION_BY_NAME, from_timestamp, to_timestamp
from contract.proto import warehouse_vision_pb2 as pb
from contract.vocabulary import CONDITIONS

DEFAULT_CAMERAS: Final[tuple[str, ...]] = ("cam-01", "cam-02")
"""The camera ids :class:`EventFactory` uses unless told otherwise: register them (``cameras``
table, ``wv db cameras add``) before streaming its events into the centre."""


def _probabilities(condition: str, confidence: float) -> pb.ConditionProbabilities:
    rest = (1.0 - confidence) / (len(CONDITIONS) - 1)
    return pb.ConditionProbabilities(
        **{name: confidence if name == condition else rest for name in CONDITIONS}
    )


class EventFactory:
    """Valid, unique ``DetectionEvent`` s with realistic defaults; deterministic for a seed.

    Every keyword accepted by :meth:`detection` / :meth:`decision` overrides one field, with
    plain values: ``condition="torn"``, ``event_time=datetime``, ``timings={"end_to_end_ms": 80}``,
    ``anomalies=[flag, ...]``. Event times advance by ``step`` from ``start`` (default: one
    minute ago), so fresh events pass the centre's future-skew check.
    """

    def __init__(
        self,
        facility_id: str = "FAC-001",
        *,
        seed: int = 0,
        start: datetime | None = None,
        step: timedelta = timedelta(milliseconds=5),
        cameras: Sequence[str] = DEFAULT_CAMERAS,
        zones: Sequence[str] = ("inbound", "sorter", "outbound"),
        model_version: str = "vit-s16-int8-v1",
    ) -> None:
        self.facility_id = facility_id
        self._rng = random.Random(seed)
        self._clock = start or datetime.now(UTC) - timedelta(minutes=1)
        self._step = step
        self.cameras = tuple(cameras)
        self.zones = tuple(zones)
        self.model_version = model_version

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _tick(self) -> datetime:
        self._clock += self._step
        return self._clock

    def _event(self, kind: pb.EventKind.ValueType, fields: dict[str, Any]) -> pb.DetectionEvent:
        rng = self._rng
        zone = fields.pop("zone", rng.choice(self.zones))
        condition = fields.pop("condition", "ok")
        confidence = fields.pop("condition_confidence", round(rng.uniform(0.86, 0.99), 4))
        event_time = fields.pop("event_time", None) or self._tick()
        first_seen = fields.pop("first_seen", event_time - timedelta(milliseconds=800))
        timings = {
            "decode_ms": 2.0,
            "preprocess_ms": 3.0,
            "queue_ms": rng.uniform(0, 10),
            "infer_ms": rng.uniform(10, 45),
            "track_ms": 0.5,
            "decide_ms": 0.3,
            "publish_ms": 1.0,
            "end_to_end_ms": round(rng.uniform(40, 160), 3),
            **fields.pop("timings", {}),
        }
        anomalies = fields.pop("anomalies", ())
        x1, y1 = rng.uniform(0, 500), rng.uniform(0, 300)
        values: dict[str, Any] = {
            "schema_version": pb.SCHEMA_VERSION_1,
            "event_id": self._uuid(),
            "kind": kind,
            "facility_id": self.facility_id,
            "camera_id": rng.choice(self.cameras),
            "track_id": f"t{rng.randrange(1 << 20)}",
            "package_id": f"PKG-{self._uuid()[:13]}",
            "sku": f"SKU-{rng.randrange(1000):04d}",
            "bbox": pb.BoundingBox(x1=x1, y1=y1, x2=x1 + rng.uniform(40, 120), y2=y1 + rng.uniform(40, 120)),
            "detection_confidence": round(rng.uniform(0.7, 0.99), 4),
            "condition": CONDITION_BY_NAME[condition],
            "condition_probabilities": _probabilities(condition, confidence),
            "condition_confidence": confidence,
            "zone": zone,
            "expected_zone": zone,
            "model_version": self.model_version,
            "engine": "onnxruntime",
            "precision": "int8",
            "timings": pb.StageTimings(**timings),
            "frames_observed": 1 if kind == pb.EVENT_KIND_DETECTION else 12,
            "frame_index": rng.randrange(1 << 30),
        }
        values.update(fields)
        event = pb.DetectionEvent(**values)
        event.event_time.CopyFrom(to_timestamp(event_time))
        event.first_seen.CopyFrom(to_timestamp(first_seen))
        event.anomalies.extend(anomalies)
        return event

    def detection(self, **fields: Any) -> pb.DetectionEvent:
        """A sampled per-frame detection."""
        return self._event(pb.EVENT_KIND_DETECTION, fields)

    def decision(self, **fields: Any) -> pb.DetectionEvent:
        """The one decision of a package track."""
        return self._event(pb.EVENT_KIND_DECISION, fields)

    def package(self, detections: int = 3, **fields: Any) -> list[pb.DetectionEvent]:
        """One package's track: ``detections`` sampled frames then its decision, same ids."""
        decision = self.decision(**fields)
        decided_at = from_timestamp(decision.event_time)
        frames = []
        for i in range(detections, 0, -1):
            frame = self.detection(
                zone=decision.zone,
                expected_zone=decision.expected_zone,
                event_time=decided_at - timedelta(milliseconds=100 * i),
                first_seen=from_timestamp(decision.first_seen),
            )
            for name in ("camera_id", "track_id", "package_id", "sku"):
                setattr(frame, name, getattr(decision, name))
            frames.append(frame)
        return [*frames, decision]

    def stream(
        self, packages: int, detections: int = 3, damaged_share: float = 0.05
    ) -> Iterator[pb.DetectionEvent]:
        """A realistic stream: per package some detections then a decision; a share are damaged."""
        for _ in range(packages):
            damaged = self._rng.random() < damaged_share
            condition = self._rng.choice(CONDITIONS[1:]) if damaged else "ok"
            yield from self.package(detections, condition=condition)


def detection_batch(events: Sequence[pb.DetectionEvent], batch_id: str | None = None) -> pb.DetectionBatch:
    """A ``DetectionBatch`` (the Kafka message value and the gRPC stream item)."""
    return pb.DetectionBatch(batch_id=batch_id or str(uuid.uuid4()), events=events)
