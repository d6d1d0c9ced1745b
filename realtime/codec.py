"""Decode and validate incoming messages: valid events out, every bad one with a typed reason.

A bad event never reaches the database (where one violated constraint would fail the whole
batch); it becomes a :class:`Rejection` carrying its raw bytes, to be dead-lettered. Checks
mirror the table constraints, so an accepted event always fits its rows.
"""

from __future__ import annotations

import json
import math
import operator
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp

from contract.events import KIND_NAME, SEVERITY_NAME, SUPPORTED_SCHEMA_VERSIONS
from contract.proto import warehouse_vision_pb2 as pb
from contract.vocabulary import CONDITIONS


class Reason(StrEnum):
    """Why a message or event was dead-lettered; the first word of ``dead_letters.reason``."""

    UNDECODABLE = "undecodable"
    OVERSIZED = "oversized"
    MISSING_FIELD = "missing_field"
    UNSUPPORTED_SCHEMA_VERSION = "unsupported_schema_version"
    UNKNOWN_FACILITY = "unknown_facility"
    UNKNOWN_CAMERA = "unknown_camera"
    FUTURE_EVENT_TIME = "future_event_time"
    INVALID_VALUE = "invalid_value"
    REJECTED_BY_DATABASE = "rejected_by_database"


@dataclass(frozen=True, slots=True)
class Rejection:
    """One message (or one event of a batch) that will never be accepted."""

    reason: Reason
    detail: str
    raw: bytes
    event_id: str | None = None
    facility_id: str | None = None
    item: int = 0
    """Index of the event in its DetectionBatch (0 for a whole-message rejection)."""

    @property
    def text(self) -> str:
        """``reason: detail`` as stored and published."""
        return f"{self.reason.value}: {self.detail}" if self.detail else self.reason.value


@dataclass(slots=True)
class Decoded:
    """The outcome of decoding messages: events to write (their anomaly flags inside them, the
    only way flags arrive from outside), rejections to dead-letter."""

    events: list[pb.DetectionEvent] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


_TEXT_FIELDS = (
    "event_id",
    "facility_id",
    "camera_id",
    "track_id",
    "package_id",
    "sku",
    "zone",
    "expected_zone",
    "model_version",
    "engine",
    "precision",
)
_FLAG_TEXT_FIELDS = (
    "anomaly_id",
    "kind",
    "source",
    "event_id",
    "facility_id",
    "camera_id",
    "package_id",
    "zone",
)
_TEXTS = operator.attrgetter(*_TEXT_FIELDS)
_REQUIRED_NAMES = ("event_id", "facility_id", "camera_id", "track_id", "model_version")
_REQUIRED_TEXT = operator.itemgetter(*(_TEXT_FIELDS.index(n) for n in _REQUIRED_NAMES))
_PACKAGE = _TEXT_FIELDS.index("package_id")
_PROBABILITIES = operator.attrgetter(*CONDITIONS)
_BOX = operator.attrgetter("x1", "y1", "x2", "y2")
_CONDITIONS = frozenset(range(1, len(CONDITIONS) + 1))  # the proto enum, without UNSPECIFIED
MAX_TEXT_LENGTH = 256
"""Longest identifier accepted; longer ones are bad input, not data."""
MAX_SUPERSEDES = 16
"""Most fallback events one primary detection replaces (one per fallback event of its track and frame)."""
_INT32_MAX = 2**31 - 1
_FLAG_KIND = re.compile(r"[a-z][a-z0-9_]{0,63}")  # the anomaly_flags.kind constraint


def _bad_text(value: str) -> bool:
    return "\x00" in value or len(value) > MAX_TEXT_LENGTH


def _bad_supersedes(e: pb.DetectionEvent, kind: str) -> bool:
    """Only a detection replaces others (the fallback's, of its frame), never itself; ids are ids."""
    ids = e.supersedes
    return (
        kind != "detection"
        or len(ids) > MAX_SUPERSEDES
        or e.event_id in ids
        or not all(ids)
        or any(map(_bad_text, ids))
    )


def _unit(value: float) -> bool:
    return 0.0 <= value <= 1.0  # false for NaN


def _camera_detail(facility_id: str, camera_id: str) -> str:
    """``<camera> of facility <facility>``: what an operator registers with ``wv db cameras add``."""
    return f"{camera_id} of facility {facility_id}"


class Validator:
    """Turns raw Kafka values and decoded gRPC batches into :class:`Decoded` results.

    ``known_facility`` answers whether a facility exists and ``known_camera`` whether a camera
    is registered for a facility (cached lookups of the ``facilities`` and ``cameras`` tables:
    :class:`~realtime.facility_cache.FacilityCache` and its ``camera`` method); ``clock`` is
    injectable so the future-skew check is testable.
    """

    def __init__(
        self,
        known_facility: Callable[[str], bool],
        *,
        known_camera: Callable[[str, str], bool],
        max_future_skew_s: float,
        max_message_bytes: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._known_facility = known_facility
        self._known_camera = known_camera
        self._max_future_skew_s = max_future_skew_s
        self.max_message_bytes = max_message_bytes
        self._clock = clock

    # --- Kafka values -------------------------------------------------------------------
    def detection_batch(self, value: bytes | None) -> Decoded:
        """A ``wv.detections`` value: a serialized ``DetectionBatch``."""
        raw = value or b""
        message_problem = self._message_problem(raw)
        if message_problem:
            return Decoded(rejections=[message_problem])
        try:
            batch = pb.DetectionBatch.FromString(raw)
        except DecodeError as exc:
            return Decoded(rejections=[Rejection(Reason.UNDECODABLE, f"not a DetectionBatch ({exc})", raw)])
        if not batch.events:
            return Decoded(rejections=[Rejection(Reason.MISSING_FIELD, "events", raw)])
        return self.events(batch.events)

    def _message_problem(self, raw: bytes) -> Rejection | None:
        if len(raw) > self.max_message_bytes:
            return Rejection(Reason.OVERSIZED, f"{len(raw)} bytes > {self.max_message_bytes}", raw)
        if not raw:
            return Rejection(Reason.UNDECODABLE, "empty message", raw)
        return None

    # --- events ---------------------------------------------------------------------------
    def events(self, events: Iterable[pb.DetectionEvent]) -> Decoded:
        """Validate decoded events one by one; a bad event does not spoil its neighbours."""
        out = Decoded()
        horizon = self._clock() + self._max_future_skew_s
        for item, event in enumerate(events):
            problem = self._event_problem(event, horizon)
            if problem:
                out.rejections.append(
                    self._reject(problem, event.SerializeToString(), event.event_id, event.facility_id, item)
                )
            else:
                out.events.append(event)
        return out

    @staticmethod
    def _reject(
        problem: tuple[Reason, str], raw: bytes, event_id: str, facility_id: str, item: int = 0
    ) -> Rejection:
        return Rejection(
            problem[0],
            problem[1],
            raw,
            event_id=event_id if event_id and not _bad_text(event_id) else None,
            facility_id=facility_id if facility_id and not _bad_text(facility_id) else None,
            item=item,
        )

    def _event_problem(self, e: pb.DetectionEvent, horizon: float) -> tuple[Reason, str] | None:
        # Hot path (every event): fields are read once, in bulk (attrgetter), and the common
        # all-good case costs a few comparisons; the loops only run to name a problem.
        if e.schema_version not in SUPPORTED_SCHEMA_VERSIONS:
            return Reason.UNSUPPORTED_SCHEMA_VERSION, str(e.schema_version)
        texts = _TEXTS(e)
        if not all(_REQUIRED_TEXT(texts)):
            return Reason.MISSING_FIELD, next(n for n in _REQUIRED_NAMES if not texts[_TEXT_FIELDS.index(n)])
        if not e.HasField("event_time"):
            return Reason.MISSING_FIELD, "event_time"
        kind = KIND_NAME.get(e.kind)
        if kind is None:
            return Reason.MISSING_FIELD if e.kind == 0 else Reason.INVALID_VALUE, "kind"
        if "\x00" in "".join(texts) or max(map(len, texts)) > MAX_TEXT_LENGTH:
            return Reason.INVALID_VALUE, next(
                n for n, t in zip(_TEXT_FIELDS, texts, strict=True) if _bad_text(t)
            )
        if kind == "decision":
            if not texts[_PACKAGE]:
                return Reason.MISSING_FIELD, "package_id"
            if not e.condition:
                return Reason.MISSING_FIELD, "condition"
            if e.condition not in _CONDITIONS:
                return Reason.INVALID_VALUE, "condition"
            values = (*_PROBABILITIES(e.condition_probabilities), e.condition_confidence)
            total = sum(values)
            if not (min(values) >= 0.0 and max(values) <= 1.0 and total == total):  # total != total: a NaN
                return Reason.INVALID_VALUE, "condition_probabilities"
        ts = e.event_time
        event_time = _seconds(ts)
        if event_time > horizon:
            return Reason.FUTURE_EVENT_TIME, f"{event_time - horizon + self._max_future_skew_s:.0f} s ahead"
        if not 0 < event_time < 253402300799:  # 1970 .. 9999: what timestamptz and datetime hold
            return Reason.INVALID_VALUE, "event_time"
        fs = e.first_seen
        if e.HasField("first_seen") and not (
            _seconds(fs) > 0 and (fs.seconds, fs.nanos) <= (ts.seconds, ts.nanos)
        ):
            return Reason.INVALID_VALUE, "first_seen"  # after 1970 like event_time (year 0 overflows)
        if not _unit(e.detection_confidence):
            return Reason.INVALID_VALUE, "detection_confidence"
        x1, y1, x2, y2 = _BOX(e.bbox)
        if not (x2 >= x1 and y2 >= y1 and math.isfinite(x2 - x1 + y2 - y1)):
            return Reason.INVALID_VALUE, "bbox"
        if e.frames_observed > _INT32_MAX:
            return Reason.INVALID_VALUE, "frames_observed"
        if e.supersedes and _bad_supersedes(e, kind):
            return Reason.INVALID_VALUE, "supersedes"
        for flag in e.anomalies:
            problem = self._flag_problem(flag, e.facility_id)
            if problem:
                return problem[0], f"anomalies.{problem[1]}"
        if not self._known_facility(e.facility_id):
            return Reason.UNKNOWN_FACILITY, e.facility_id
        if not self._known_camera(e.facility_id, e.camera_id):
            return Reason.UNKNOWN_CAMERA, _camera_detail(e.facility_id, e.camera_id)
        for flag in e.anomalies:  # a flag naming another camera of the facility: that one too
            camera = flag.camera_id
            if camera and camera != e.camera_id and not self._known_camera(e.facility_id, camera):
                return Reason.UNKNOWN_CAMERA, f"{_camera_detail(e.facility_id, camera)} (anomalies.camera_id)"
        return None

    def _flag_problem(self, f: pb.AnomalyFlag, event_facility: str) -> tuple[Reason, str] | None:
        """A flag inside an event: it inherits the event's ids, place and time where it names none."""
        if not f.kind:
            return Reason.MISSING_FIELD, "kind"
        for name in _FLAG_TEXT_FIELDS:
            if _bad_text(getattr(f, name)):
                return Reason.INVALID_VALUE, name
        if not _FLAG_KIND.fullmatch(f.kind):
            return Reason.INVALID_VALUE, "kind"
        if f.facility_id not in ("", event_facility):
            return Reason.INVALID_VALUE, "facility_id"
        if f.severity not in SEVERITY_NAME:
            return Reason.INVALID_VALUE, "severity"
        if not math.isfinite(f.score):
            return Reason.INVALID_VALUE, "score"
        flagged_at = _seconds(f.flagged_at)
        if f.HasField("flagged_at") and not 0 < flagged_at < 253402300799:
            return Reason.INVALID_VALUE, "flagged_at"
        if flagged_at > self._clock() + self._max_future_skew_s:
            return Reason.FUTURE_EVENT_TIME, "flagged_at"
        if f.evidence_json:
            try:
                evidence = json.loads(f.evidence_json)
            except ValueError:
                return Reason.INVALID_VALUE, "evidence_json"
            if not isinstance(evidence, dict) or "\\u0000" in f.evidence_json or "\x00" in f.evidence_json:
                return Reason.INVALID_VALUE, "evidence_json"
        return None


def _seconds(ts: Timestamp) -> float:
    """A wire timestamp in seconds, nanos included (they may be negative or out of range there)."""
    return ts.seconds + ts.nanos * 1e-9
