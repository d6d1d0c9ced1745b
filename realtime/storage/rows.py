"""Events as COPY rows: the column lists, their PostgreSQL types, and the tuple builders.

This is the only per-event Python work on the write path, so it reads each proto field once
and builds plain tuples that psycopg's binary COPY formats in C.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Final

from contract.events import CONDITION_NAME, KIND_NAME, SEVERITY_NAME, anomaly_id_for
from contract.proto import warehouse_vision_pb2 as pb
from contract.vocabulary import CONDITIONS, STAGES

EVENT_COLUMNS: Final[tuple[tuple[str, str], ...]] = (
    ("event_id", "text"),
    ("event_time", "timestamptz"),
    ("kind", "text"),
    ("facility_id", "text"),
    ("camera_id", "text"),
    ("track_id", "text"),
    ("package_id", "text"),
    ("sku", "text"),
    ("x1", "float4"),
    ("y1", "float4"),
    ("x2", "float4"),
    ("y2", "float4"),
    ("detection_confidence", "float4"),
    ("zone", "text"),
    ("expected_zone", "text"),
    ("model_version", "text"),
    ("engine", "text"),
    ("precision", "text"),
    ("fallback", "bool"),
    ("hard_example", "bool"),
    ("frames_observed", "int4"),
    ("first_seen", "timestamptz"),
    *((stage, "float4") for stage in STAGES),
    ("embedding", "float4[]"),
    ("supersedes", "text[]"),
)
"""``package_detections`` columns filled from an event (``ingested_at`` is the server's clock)."""

ASSESSMENT_COLUMNS: Final[tuple[tuple[str, str], ...]] = (
    ("condition", "text"),
    *((f"p_{condition}", "float4") for condition in CONDITIONS),
    ("condition_confidence", "float4"),
)
"""Extra staging columns of decisions, the source of ``quality_assessments`` rows."""

STAGE_COLUMNS: Final = EVENT_COLUMNS + ASSESSMENT_COLUMNS
"""An event row and its assessment part: the staging row of the replay-safe path."""

_TYPES: Final = dict(STAGE_COLUMNS)
_QA_HEAD: Final = ("event_id", "event_time", "facility_id", "package_id")
_QA_TAIL: Final = ("fallback", "model_version")
QA_COLUMNS: Final = tuple((n, _TYPES[n]) for n in (*_QA_HEAD, *(c for c, _ in ASSESSMENT_COLUMNS), *_QA_TAIL))
"""``quality_assessments`` columns, in :func:`qa_row` order."""

_DECISION_HEAD: Final = (
    "event_time",
    "event_id",
    "package_id",
    "facility_id",
    "sku",
    "expected_zone",
    "zone",
)
DECISION_COLUMNS: Final = tuple((n, _TYPES[n]) for n in (*_DECISION_HEAD, "condition", "first_seen"))
"""What the ``packages`` upsert needs of a stored decision, in :func:`decision_row` order."""

FLAG_COLUMNS: Final[tuple[tuple[str, str], ...]] = (
    ("anomaly_id", "text"),
    ("flagged_at", "timestamptz"),
    ("facility_id", "text"),
    ("camera_id", "text"),
    ("package_id", "text"),
    ("zone", "text"),
    ("event_id", "text"),
    ("kind", "text"),
    ("severity", "text"),
    ("score", "float4"),
    ("source", "text"),
    ("evidence", "text"),
)
"""``anomaly_flags`` columns; ``evidence`` is staged as text and cast to jsonb on insert."""

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
NO_ASSESSMENT: Final = (None,) * len(ASSESSMENT_COLUMNS)
_NO_TIMINGS: Final = (None,) * 8


def _time(seconds: int, nanos: int) -> datetime:
    return _EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000)


_IDS = operator.attrgetter("facility_id", "camera_id", "track_id", "package_id", "sku")
_BOX = operator.attrgetter("x1", "y1", "x2", "y2")
_DETAILS = operator.attrgetter(
    "detection_confidence",
    "zone",
    "expected_zone",
    "model_version",
    "engine",
    "precision",
    "fallback",
    "hard_example",
    "frames_observed",
)
_TIMINGS = operator.attrgetter(*STAGES)
_PROBABILITIES = operator.attrgetter(*CONDITIONS)


def event_row(e: pb.DetectionEvent) -> tuple[object, ...]:
    """The ``package_detections`` row of a validated event, in :data:`EVENT_COLUMNS` order."""
    ts = e.event_time
    fs = e.first_seen if e.HasField("first_seen") else None
    return (
        e.event_id,
        _EPOCH + timedelta(0, ts.seconds, ts.nanos // 1000),
        KIND_NAME[e.kind],
        *_IDS(e),
        *_BOX(e.bbox),
        *_DETAILS(e),
        None if fs is None else _EPOCH + timedelta(0, fs.seconds, fs.nanos // 1000),
        *(_TIMINGS(e.timings) if e.HasField("timings") else _NO_TIMINGS),
        list(e.embedding) if len(e.embedding) else None,
        list(e.supersedes) if len(e.supersedes) else None,
    )


def assessment_row(e: pb.DetectionEvent) -> tuple[object, ...]:
    """The :data:`ASSESSMENT_COLUMNS` part of a staging row (all NULL for a detection)."""
    if e.kind != pb.EVENT_KIND_DECISION:
        return NO_ASSESSMENT
    return (CONDITION_NAME[e.condition], *_PROBABILITIES(e.condition_probabilities), e.condition_confidence)


def flag_row(f: pb.AnomalyFlag, event: pb.DetectionEvent | None = None) -> tuple[object, ...]:
    """The row of a validated flag; an embedded flag inherits its event's ids, time and place."""
    if event is None:
        at = f.flagged_at
        flagged_at = _time(at.seconds, at.nanos)
        facility, camera, package, zone, event_id = (
            f.facility_id,
            f.camera_id,
            f.package_id,
            f.zone,
            f.event_id,
        )
    else:
        at = f.flagged_at if f.HasField("flagged_at") else event.event_time
        flagged_at = _time(at.seconds, at.nanos)
        facility = event.facility_id
        camera = f.camera_id or event.camera_id
        package = f.package_id or event.package_id
        zone = f.zone or event.zone
        event_id = f.event_id or event.event_id
    return (
        f.anomaly_id or anomaly_id_for(f.source or "edge", f.kind, facility, event_id, flagged_at),
        flagged_at,
        facility,
        camera,
        package,
        zone,
        event_id,
        f.kind,
        SEVERITY_NAME[f.severity],
        f.score,
        f.source or "edge",
        f.evidence_json or "{}",
    )


def _pick(names: tuple[str, ...]) -> operator.itemgetter:
    index = {name: i for i, (name, _) in enumerate(EVENT_COLUMNS)}
    return operator.itemgetter(*(index[n] for n in names))


_ROW_QA_HEAD = _pick(_QA_HEAD)
_ROW_QA_TAIL = _pick(_QA_TAIL)
_ROW_DECISION_HEAD = _pick(_DECISION_HEAD)
_ROW_FIRST_SEEN = _pick(("first_seen",))


def qa_row(row: tuple[object, ...], assessment: tuple[object, ...]) -> tuple[object, ...]:
    """The ``quality_assessments`` row of a decision, from its event row and assessment part."""
    return (*_ROW_QA_HEAD(row), *assessment, *_ROW_QA_TAIL(row))


def decision_row(row: tuple[object, ...], assessment: tuple[object, ...]) -> tuple[object, ...]:
    """The :data:`DECISION_COLUMNS` row of a decision."""
    return (*_ROW_DECISION_HEAD(row), assessment[0], _ROW_FIRST_SEEN(row))


class BatchRows:
    """A batch's rows, built as its events arrive (pure Python, no I/O), one per event id.

    Turning protobuf events into tuples is most of the CPU a write costs; building them as
    messages are consumed, while the previous batch is being written, lets that work overlap
    the database's instead of adding to it.
    """

    __slots__ = ("_seen", "decided", "events", "flag_rows", "flags", "repeated", "rows", "supersede_rows")

    def __init__(self) -> None:
        self.events: list[pb.DetectionEvent] = []
        self.flags: list[pb.AnomalyFlag] = []
        self.rows: list[tuple[object, ...]] = []
        self.decided: list[tuple[tuple[object, ...], tuple[object, ...]]] = []
        """(event row, assessment part) of each decision."""
        self.flag_rows: list[tuple[object, ...]] = []
        self.supersede_rows: list[tuple[object, ...]] = []
        """Rows replacing fallback rows, and fallback rows a stored replacement may name."""
        self.repeated = 0
        """Events dropped because their id was already in the batch (duplicates, like replays)."""
        self._seen: set[str] = set()

    @classmethod
    def of(cls, events: Iterable[pb.DetectionEvent], flags: Iterable[pb.AnomalyFlag] = ()) -> BatchRows:
        batch = cls()
        batch.add(events, flags)
        return batch

    def add(self, events: Iterable[pb.DetectionEvent], flags: Iterable[pb.AnomalyFlag] = ()) -> None:
        """Add validated events (a repeated event id is dropped) and standalone flags."""
        for e in events:
            if e.event_id in self._seen:
                self.repeated += 1
                continue
            self._seen.add(e.event_id)
            row = event_row(e)
            self.events.append(e)
            self.rows.append(row)
            if e.kind == pb.EVENT_KIND_DECISION:
                self.decided.append((row, assessment_row(e)))
            elif e.fallback or e.supersedes:
                self.supersede_rows.append(row)
            for f in e.anomalies:
                self.flag_rows.append(flag_row(f, e))
        for f in flags:
            self.flags.append(f)
            self.flag_rows.append(flag_row(f))

    def __len__(self) -> int:
        return len(self.events) + len(self.flags)
