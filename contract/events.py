"""Builders for the contract's messages, shared by production code, tests and benchmarks.

The proto's enums, timestamps and nested messages are awkward to fill by hand; these helpers
take plain Python values (``condition="crushed"``, ``event_time=datetime``) and return valid
messages. Test and benchmark event streams come from ``bench.fixtures.events``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from google.protobuf.timestamp_pb2 import Timestamp

from contract.proto import warehouse_vision_pb2 as pb
from contract.vocabulary import CONDITIONS

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
