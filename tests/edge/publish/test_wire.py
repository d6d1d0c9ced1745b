"""Stored event bytes are published as they are: the framed batch is the batch protobuf would write."""

from __future__ import annotations

import time

import pytest
from google.protobuf.message import DecodeError

from contract.proto import warehouse_vision_pb2 as pb
from edge.decisions.events import FrameContext, ModelInfo, anomaly, new_event
from edge.publish import wire


def events() -> list[pb.DetectionEvent]:
    ctx = FrameContext("FAC-001", "cam-1", 7, time.time(), ModelInfo("v1", "onnxruntime", "int8"))
    plain = new_event(pb.EVENT_KIND_DECISION, ctx, "t-1")
    plain.embedding.extend([0.25] * 64)
    flagged = new_event(pb.EVENT_KIND_DECISION, ctx, "t-2")
    flagged.anomalies.append(
        anomaly(flagged, "damaged", pb.SEVERITY_CRITICAL, 0.97, {"p": 0.97}, time.time())
    )
    unversioned = new_event(pb.EVENT_KIND_DETECTION, ctx, "t-3")
    unversioned.ClearField("schema_version")
    return [plain, flagged, unversioned]


def test_a_batch_framed_from_stored_bytes_equals_the_serialised_batch_message():
    evs = events()
    stored = [wire.read(e.SerializeToString()) for e in evs]
    assert [o.event_id for o in stored] == [e.event_id for e in evs]
    framed = wire.batch_bytes("b-1", stored)
    assert framed == pb.DetectionBatch(batch_id="b-1", events=evs).SerializeToString()
    assert list(pb.DetectionBatch.FromString(framed).events) == evs  # the flag travels inside its event


@pytest.mark.parametrize("payload", [b"not an event", b"\x12\x05ab", b""])
def test_bytes_that_are_no_event_are_refused(payload: bytes):
    with pytest.raises(DecodeError):
        wire.read(payload)
