"""Builders for the contract's messages, shared by production code, tests and benchmarks.

The proto's enums, timestamps and nested messages are awkward to fill by hand; these helpers
take plain Python values (``condition="crushed"``, ``event_time=datetime``) and return valid
messages. :class:`EventFactory` produces realistic, unique, valid event streams for tests,
benchmarks and simulations (other tiers generate ``DetectionEvent`` s with it too).
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from google.protobuf.timestamp_pb2 import Timestamp

from realtime.proto import warehouse_vision_pb2 as pb

CONDITIONS: Final[tuple[str, ...]] = ("ok", "crushed", "torn", "wet", "open")
"""Condition names in proto enum order (``CONDITION_OK`` = 1 …)."""
CONDITION_BY_NAME: Final[dict[str, pb.Condition.ValueType]] = {
    name: pb.Condition.Value(f"CONDITION_{name.upper()}") for name in CONDITIONS
}
CONDITION_NAME: Final[dict[int, str]] = {v: k for k, v in CONDITION_BY_NAME.items()}
KIND_NAME: Final[dict[int, str]] = {pb.EVENT_KIND_DETECTION: "detection", pb.EVENT_KIND_DECISION: "decision"}
SEVERITY_BY_NAME: Final[dict[str, pb.Severity.ValueType]] = {
    "info": pb.SEVERITY_INFO,
    "warning": pb.SEVERITY_WARNING,
    "critical": pb.SEVERITY_CRITICAL,
}
SEVERITY_NAME: Final[dict[int, str]] = {v: k for k, v in SEVERITY_BY_NAME.items()}
SUPPORTED_SCHEMA_VERSIONS: Final[frozenset[int]] = frozenset({pb.SCHEMA_VERSION_1})
DEFAULT_CAMERAS: Final[tuple[str, ...]] = ("cam-01", "cam-02")
"""The camera ids :class:`EventFactory` uses unless told otherwise: register them (``cameras``
table, ``wv db cameras add``) before streaming its events into the centre."""

_ANOMALY_NAMESPACE: Final = uuid.UUID("6f3b1c2e-7a51-4d0e-9a43-2f8e5c1d9b70")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def to_timestamp(when: datetime) -> Timestamp:
    """A protobuf Timestamp for an aware datetime (naive ones are taken as UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = when - _EPOCH
    ts = Timestamp()
    ts.seconds = delta.days * 86400 + delta.seconds
    ts.nanos = delta.microseconds * 1000
    return ts


def from_timestamp(ts: Timestamp) -> datetime:
    """An aware UTC datetime (microsecond precision, what PostgreSQL keeps)."""
    return _EPOCH + timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000)


def anomaly_id_for(*parts: object) -> str:
    """Deterministic anomaly id: the same cause always yields the same id, so replays dedupe."""
    return str(uuid.uuid5(_ANOMALY_NAMESPACE, "|".join(str(p) for p in parts)))


def anomaly_flag(
    *,
    kind: str,
    facility_id: str,
    flagged_at: datetime,
    severity: str = "warning",
    score: float = 0.0,
    evidence: Mapping[str, Any] | None = None,
    source: str = "edge",
    event_id: str = "",
    camera_id: str = "",
    package_id: str = "",
    zone: str = "",
    anomaly_id: str | None = None,
) -> pb.AnomalyFlag:
    """An ``AnomalyFlag``; without ``anomaly_id`` one is derived from source, kind and cause."""
    flag = pb.AnomalyFlag(
        anomaly_id=anomaly_id
        or anomaly_id_for(source, kind, facility_id, event_id or package_id, flagged_at),
        kind=kind,
        severity=SEVERITY_BY_NAME[severity],
        score=score,
        evidence_json=json.dumps(dict(evidence or {}), sort_keys=True, default=str),
        source=source,
        event_id=event_id,
        facility_id=facility_id,
        camera_id=camera_id,
        package_id=package_id,
        zone=zone,
    )
    flag.flagged_at.CopyFrom(to_timestamp(flagged_at))
    return flag


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
