"""Validation of incoming events: every bad value gets its reason, good neighbours pass."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from bench.fixtures.events import EventFactory, detection_batch
from contract.events import anomaly_flag, to_timestamp
from contract.proto import warehouse_vision_pb2 as pb
from realtime.codec import Reason, Validator

NOW = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)


CAMERAS = {("FAC-001", "cam-01"), ("FAC-001", "cam-02"), ("FAC-002", "cam-01")}


@pytest.fixture
def validator() -> Validator:
    return Validator(
        {"FAC-001", "FAC-002"}.__contains__,
        known_camera=lambda facility, camera: (facility, camera) in CAMERAS,
        max_future_skew_s=300,
        max_message_bytes=64 * 1024,
        clock=NOW.timestamp,
    )


def _factory() -> EventFactory:
    return EventFactory("FAC-001", seed=71, start=NOW - timedelta(minutes=5))


def _breakers() -> dict[str, tuple[object, str]]:
    """Field mutation -> expected ``reason: detail`` prefix."""
    return {
        "schema": (lambda e: setattr(e, "schema_version", 9), "unsupported_schema_version: 9"),
        "id": (lambda e: setattr(e, "event_id", ""), "missing_field: event_id"),
        "camera": (lambda e: setattr(e, "camera_id", ""), "missing_field: camera_id"),
        "time": (lambda e: e.ClearField("event_time"), "missing_field: event_time"),
        "kind": (lambda e: setattr(e, "kind", 0), "missing_field: kind"),
        "nul": (lambda e: setattr(e, "sku", "SKU\x00x"), "invalid_value: sku"),
        "long": (lambda e: setattr(e, "zone", "z" * 300), "invalid_value: zone"),
        "future": (
            lambda e: e.event_time.CopyFrom(to_timestamp(NOW + timedelta(hours=1))),
            "future_event_time",
        ),
        "first_seen": (
            lambda e: e.first_seen.CopyFrom(to_timestamp(NOW + timedelta(minutes=1))),
            "invalid_value: first_seen",
        ),
        "confidence": (
            lambda e: setattr(e, "detection_confidence", math.nan),
            "invalid_value: detection_confidence",
        ),
        "bbox": (lambda e: setattr(e.bbox, "x2", e.bbox.x1 - 1), "invalid_value: bbox"),
        "inf": (lambda e: setattr(e.bbox, "x2", math.inf), "invalid_value: bbox"),
        "facility": (lambda e: setattr(e, "facility_id", "FAC-404"), "unknown_facility: FAC-404"),
        "unregistered camera": (
            lambda e: setattr(e, "camera_id", "cam-99"),
            "unknown_camera: cam-99 of facility FAC-001",
        ),
        "camera of another facility": (
            lambda e: e.MergeFrom(pb.DetectionEvent(facility_id="FAC-002", camera_id="cam-02")),
            "unknown_camera: cam-02 of facility FAC-002",
        ),
        "flag camera": (
            lambda e: e.anomalies.append(
                anomaly_flag(kind="damaged", facility_id="", camera_id="cam-99", flagged_at=NOW)
            ),
            "unknown_camera: cam-99 of facility FAC-001 (anomalies.camera_id)",
        ),
        "condition": (lambda e: setattr(e, "condition", 0), "missing_field: condition"),
        "probabilities": (
            lambda e: setattr(e.condition_probabilities, "torn", 1.5),
            "invalid_value: condition_probabilities",
        ),
        "flag kind": (
            lambda e: e.anomalies.append(anomaly_flag(kind="Bad Kind", facility_id="", flagged_at=NOW)),
            "invalid_value: anomalies.kind",
        ),
        "flag time before 1970 by its negative nanos": (
            lambda e: e.anomalies.append(
                pb.AnomalyFlag(
                    kind="damaged",
                    severity=pb.SEVERITY_WARNING,
                    flagged_at=Timestamp(seconds=1, nanos=-(2**31)),
                )
            ),
            "invalid_value: anomalies.flagged_at",
        ),
        "flag evidence": (
            lambda e: e.anomalies.append(
                pb.AnomalyFlag(kind="damaged", severity=pb.SEVERITY_WARNING, evidence_json="[1, 2")
            ),
            "invalid_value: anomalies.evidence_json",
        ),
    }


@pytest.mark.parametrize("case", sorted(_breakers()))
def test_each_bad_field_is_rejected_with_its_reason_and_neighbours_pass(validator, case):
    factory = _factory()
    good, bad, after = factory.decision(), factory.decision(), factory.detection()
    mutate, expected = _breakers()[case]
    mutate(bad)  # type: ignore[operator]
    decoded = validator.detection_batch(detection_batch([good, bad, after]).SerializeToString())
    assert [e.event_id for e in decoded.events] == [good.event_id, after.event_id]
    [rejection] = decoded.rejections
    assert rejection.text.startswith(expected), rejection.text
    assert rejection.item == 1 and rejection.raw == bad.SerializeToString()


def test_whole_messages_that_cannot_be_read_are_rejected(validator):
    assert validator.detection_batch(b"\x0a\x05abc").rejections[0].reason is Reason.UNDECODABLE
    assert validator.detection_batch(b"").rejections[0].reason is Reason.UNDECODABLE
    assert validator.detection_batch(b"\x00" * 70_000).rejections[0].reason is Reason.OVERSIZED
    assert validator.detection_batch(detection_batch([]).SerializeToString()).rejections[0].text == (
        "missing_field: events"
    )


def test_a_flag_embedded_in_an_event_may_name_its_own_or_another_registered_camera(validator):
    factory = _factory()
    own, other = factory.decision(camera_id="cam-01"), factory.decision(camera_id="cam-01")
    own.anomalies.append(anomaly_flag(kind="damaged", facility_id="", camera_id="cam-01", flagged_at=NOW))
    other.anomalies.append(anomaly_flag(kind="damaged", facility_id="", camera_id="cam-02", flagged_at=NOW))
    decoded = validator.detection_batch(detection_batch([own, other]).SerializeToString())
    assert decoded.events == [own, other] and not decoded.rejections
