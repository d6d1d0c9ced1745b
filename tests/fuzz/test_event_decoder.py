"""Property-based fuzzing of the event decoder (`realtime/codec.py`): whatever arrives — random
bytes, damaged valid messages, or well-formed messages with hostile field values — it is either
accepted as an event that fits its database rows, or rejected with a reason; it never raises.

Runs derandomized (the same cases every run, so a failure reproduces): 8,650 cases in all.
A sample of accepted hostile events is written to the real database: none may be refused there.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.fixtures.events import EventFactory, detection_batch
from contract.proto import warehouse_vision_pb2 as pb
from realtime.codec import MAX_TEXT_LENGTH, Reason, Validator
from realtime.storage.connection import Connector
from realtime.storage.rows import assessment_row, event_row, flag_row
from realtime.storage.writer import EventWriter

NOW = 1_790_000_000.0  # a fixed clock: the future-skew check is part of what is fuzzed
KNOWN = {"FAC-001", "FAC-002", "FAC-003"}
CAMERAS = {(facility, camera) for facility in KNOWN for camera in ("cam-01", "cam-02", "cam-1")}
FUZZ = settings(derandomize=True, deadline=None, suppress_health_check=list(HealthCheck), database=None)

validator = Validator(
    KNOWN.__contains__,
    known_camera=lambda facility, camera: (facility, camera) in CAMERAS,
    max_future_skew_s=300.0,
    max_message_bytes=64 * 1024,
    clock=lambda: NOW,
)
factory = EventFactory("FAC-001", seed=3, start=datetime.fromtimestamp(NOW - 600, UTC))
SEEDS = [detection_batch(factory.package(3)).SerializeToString() for _ in range(8)]
TEMPLATES = (factory.decision(), factory.detection())

SPECIAL_TEXTS = [
    "",
    "FAC-001",
    "FAC-404",
    "cam-1",
    "'; DROP TABLE packages; --",
    "\x00",
    "a\x00b",
    "é🙂",
    "a" * MAX_TEXT_LENGTH,
    "a" * (MAX_TEXT_LENGTH + 1),
    "é" * MAX_TEXT_LENGTH,
    "🙂" * 300,
    "\u202e\ufeff\u200b",
]
texts = st.one_of(st.sampled_from(SPECIAL_TEXTS), st.text(max_size=12))
floats = st.one_of(
    st.sampled_from([0.0, 1.0, -0.0, 0.5, 1.0000001, -1e-9, math.nan, math.inf, -math.inf, 3.4e38, -3.4e38]),
    st.floats(width=32),
)
int64 = st.integers(-(2**63), 2**63 - 1)
seconds = st.one_of(
    st.integers(int(NOW) - 10**9, int(NOW) + 10**6),
    int64,
    st.sampled_from([0, -1, 1, -62135596800, 253402300798, 253402300799]),
)
nanos = st.one_of(st.integers(0, 999_999_999), st.sampled_from([-1, 10**9, -(2**31), 2**31 - 1]))
timestamps = st.one_of(st.tuples(seconds, nanos), st.none())
json_texts = st.one_of(
    st.sampled_from(
        ["", "{}", '{"a": 1}', "[]", "null", "{", '{"a": NaN}', '{"a": "\\u0000"}', '{"a": "\\ud800"}']
    ),
    st.text(max_size=12),
)


def _set_time(message, name: str, value: tuple[int, int] | None) -> None:
    """Set (or clear, for None) a Timestamp field."""
    if value is None:
        message.ClearField(name)
    else:
        getattr(message, name).seconds, getattr(message, name).nanos = value


FLAG_TEMPLATE = pb.AnomalyFlag(
    anomaly_id="a-1", kind="damaged", severity=pb.SEVERITY_WARNING, evidence_json="{}", facility_id="FAC-001"
)
FLAG_TEMPLATE.flagged_at.seconds = int(NOW) - 60
FLAG_MUTATIONS = {
    "anomaly_id": texts,
    "kind": st.one_of(st.sampled_from(["misplaced", "Bad Kind", "x" * 65, ""]), texts),
    "severity": st.integers(-3, 6),
    "score": floats,
    "evidence_json": json_texts,
    "source": texts,
    "event_id": texts,
    "facility_id": st.one_of(st.sampled_from(sorted(KNOWN)), texts),
    "camera_id": texts,
    "package_id": texts,
    "zone": texts,
    "flagged_at": timestamps,
}


@st.composite
def flags(draw) -> pb.AnomalyFlag:
    """A complete flag with a few fields replaced by hostile values."""
    f = pb.AnomalyFlag()
    f.CopyFrom(FLAG_TEMPLATE)
    for name in draw(st.lists(st.sampled_from(sorted(FLAG_MUTATIONS)), max_size=4)):
        value = draw(FLAG_MUTATIONS[name])
        if name == "flagged_at":
            _set_time(f, name, value)
        else:
            setattr(f, name, value)
    return f


def _set_event(e: pb.DetectionEvent, name: str, value) -> None:
    if name in ("event_time", "first_seen"):
        _set_time(e, name, value)
    elif name == "bbox":
        e.bbox.x1, e.bbox.y1, e.bbox.x2, e.bbox.y2 = value
    elif name == "p_ok":
        e.condition_probabilities.ok = value
    elif name == "end_to_end_ms":
        e.timings.end_to_end_ms = value
    elif name in ("anomalies", "embedding"):
        getattr(e, name).extend(value)
    else:
        setattr(e, name, value)


EVENT_MUTATIONS = {
    **{
        name: texts
        for name in (
            "event_id",
            "facility_id",
            "camera_id",
            "track_id",
            "package_id",
            "sku",
            "zone",
            "model_version",
        )
    },
    "schema_version": st.sampled_from([0, 2, 99, -1]),
    "kind": st.sampled_from([0, 3, -7, 1, 2]),
    "event_time": timestamps,
    "first_seen": timestamps,
    "bbox": st.tuples(floats, floats, floats, floats),
    "detection_confidence": floats,
    "condition": st.integers(-2, 8),
    "condition_confidence": floats,
    "p_ok": floats,
    "end_to_end_ms": floats,
    "frames_observed": st.integers(0, 2**32 - 1),
    "frame_index": int64,
    "anomalies": st.lists(flags(), min_size=1, max_size=2),
    "embedding": st.lists(floats, max_size=8),
}


@st.composite
def events(draw) -> pb.DetectionEvent:
    """A valid event (decision or detection) with a few fields replaced by hostile values."""
    e = pb.DetectionEvent()
    e.CopyFrom(draw(st.sampled_from(TEMPLATES)))
    for name in draw(st.lists(st.sampled_from(sorted(EVENT_MUTATIONS)), max_size=5)):
        _set_event(e, name, draw(EVENT_MUTATIONS[name]))
    return e


def _check_fits_rows(e: pb.DetectionEvent) -> None:
    """What the table constraints demand of an accepted event; building its rows must not fail."""
    row = event_row(e)
    assessment_row(e)
    for f in e.anomalies:
        flag = flag_row(f, e)
        assert (e.facility_id, f.camera_id or e.camera_id) in CAMERAS
        assert flag[1].year >= 1970 and flag[7] and flag[8] in ("info", "warning", "critical")
    texts_ = [v for v in row if isinstance(v, str)]
    assert all("\x00" not in t and len(t) <= MAX_TEXT_LENGTH for t in texts_)
    x1, y1, x2, y2, confidence = row[8:13]
    assert 0.0 <= confidence <= 1.0
    assert all(math.isfinite(v) for v in (x1, y1, x2, y2)) and x2 >= x1 and y2 >= y1
    assert e.facility_id in KNOWN and (e.facility_id, e.camera_id) in CAMERAS
    assert row[1].timestamp() <= NOW + 300.0
    if row[21] is not None:
        assert row[21] <= row[1]


def _check(decoded, total: int) -> None:
    assert len(decoded.events) + len(decoded.rejections) == total
    for r in decoded.rejections:
        assert isinstance(r.reason, Reason) and r.text
    for e in decoded.events:
        _check_fits_rows(e)


@settings(FUZZ, max_examples=2500)
@given(st.binary(max_size=512))
def test_random_bytes_never_raise(raw: bytes) -> None:
    decoded = validator.detection_batch(raw)
    assert decoded.rejections or decoded.events


@st.composite
def damaged(draw) -> bytes:
    """A valid DetectionBatch with bytes flipped, cut, duplicated or spliced."""
    raw = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "dup", "insert"]))
        i = draw(st.integers(0, max(0, len(raw) - 1)))
        if op == "flip" and raw:
            raw[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            raw = raw[:i]
        elif op == "dup":
            raw = raw[:i] + raw[i:] + raw[i : i + draw(st.integers(1, 64))]
        else:
            raw[i:i] = draw(st.binary(min_size=1, max_size=16))
    return bytes(raw)


@settings(FUZZ, max_examples=2500)
@given(damaged())
def test_damaged_batches_are_accepted_or_rejected_never_raise(raw: bytes) -> None:
    decoded = validator.detection_batch(raw)
    if decoded.events:
        _check(decoded, len(pb.DetectionBatch.FromString(raw).events))
    else:
        assert decoded.rejections


@settings(FUZZ, max_examples=3500)
@given(st.lists(events(), min_size=1, max_size=3))
def test_hostile_field_values_are_accepted_only_when_they_fit_the_tables(batch) -> None:
    raw = detection_batch(batch).SerializeToString()
    decoded = validator.detection_batch(raw)
    if len(raw) > validator.max_message_bytes:
        assert decoded.rejections[0].reason is Reason.OVERSIZED
        return
    _check(decoded, len(batch))
    assert len(validator.events(batch).events) == len(decoded.events)  # gRPC path: same verdicts


@pytest.fixture
def writer_connection(database_url: str, db):
    connector = Connector(database_url, application_name="wv-fuzz")
    yield connector
    connector.close()


@settings(FUZZ, max_examples=150)
@given(st.lists(events(), min_size=1, max_size=3))
def test_accepted_hostile_events_are_stored_by_the_database_without_refusal(writer_connection, batch) -> None:
    decoded = validator.events(batch)
    if not decoded.events:
        return
    with writer_connection.connection() as conn:
        result = EventWriter().write_isolating(conn, decoded.events, source="fuzz")
    assert not result.rejected, [d.rejection.text for d in result.rejected]
