"""Read paths answering the contract's questions; parameterised SQL only, results as proto messages.

``package_history`` walks the package's rows in three tables through their ``(package_id,
time)`` indexes and merges them in time order; ``anomaly_report`` counts a facility's flags by
kind and severity in a time range and lists the newest. Both are what the gRPC service returns.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import Any

import psycopg
from psycopg.rows import dict_row

from contract.events import CONDITION_BY_NAME, SEVERITY_BY_NAME, to_timestamp
from contract.proto import warehouse_vision_pb2 as pb
from contract.vocabulary import STAGES

MAX_TIMELINE_ENTRIES = 10_000
"""Per table; a package has a few dozen rows, so this only guards against pathological ids."""
DEFAULT_MAX_FLAGS = 100
MAX_FLAGS = 10_000

_KIND = {"detection": pb.EVENT_KIND_DETECTION, "decision": pb.EVENT_KIND_DECISION}
_FLAG_COLUMNS = (
    "anomaly_id, flagged_at, facility_id, camera_id, package_id, zone, event_id, "
    "kind, severity, score, source, evidence"
)


def _detection(row: dict[str, Any]) -> pb.DetectionEvent:
    event = pb.DetectionEvent(
        schema_version=pb.SCHEMA_VERSION_1,
        event_id=row["event_id"],
        kind=_KIND[row["kind"]],
        facility_id=row["facility_id"],
        camera_id=row["camera_id"],
        track_id=row["track_id"],
        package_id=row["package_id"],
        sku=row["sku"],
        bbox=pb.BoundingBox(x1=row["x1"], y1=row["y1"], x2=row["x2"], y2=row["y2"]),
        detection_confidence=row["detection_confidence"],
        zone=row["zone"],
        expected_zone=row["expected_zone"],
        model_version=row["model_version"],
        engine=row["engine"],
        precision=row["precision"],
        fallback=row["fallback"],
        hard_example=row["hard_example"],
        frames_observed=row["frames_observed"],
        embedding=row["embedding"] or (),
        supersedes=row["supersedes"] or (),
        superseded_by=row["superseded_by"] or "",
    )
    if any(row[t] is not None for t in STAGES):
        event.timings.CopyFrom(pb.StageTimings(**{t: row[t] or 0.0 for t in STAGES}))
    event.event_time.CopyFrom(to_timestamp(row["event_time"]))
    if row["first_seen"] is not None:
        event.first_seen.CopyFrom(to_timestamp(row["first_seen"]))
    return event


def _assessment(row: dict[str, Any]) -> pb.QualityAssessment:
    return pb.QualityAssessment(
        event_id=row["event_id"],
        condition=CONDITION_BY_NAME[row["condition"]],
        condition_probabilities=pb.ConditionProbabilities(
            ok=row["p_ok"], crushed=row["p_crushed"], torn=row["p_torn"], wet=row["p_wet"], open=row["p_open"]
        ),
        condition_confidence=row["condition_confidence"],
        fallback=row["fallback"],
        model_version=row["model_version"],
    )


def flag_message(row: dict[str, Any]) -> pb.AnomalyFlag:
    """An ``anomaly_flags`` row as the contract's ``AnomalyFlag``."""
    flag = pb.AnomalyFlag(
        anomaly_id=row["anomaly_id"],
        kind=row["kind"],
        severity=SEVERITY_BY_NAME[row["severity"]],
        score=row["score"],
        evidence_json=json.dumps(row["evidence"], sort_keys=True),
        source=row["source"],
        event_id=row["event_id"],
        facility_id=row["facility_id"],
        camera_id=row["camera_id"],
        package_id=row["package_id"],
        zone=row["zone"],
    )
    flag.flagged_at.CopyFrom(to_timestamp(row["flagged_at"]))
    return flag


@dataclass(frozen=True)
class PackageRows:
    """What one database holds of a package: its detections, assessments, flags and packages row."""

    detections: list[dict[str, Any]]
    assessments: list[dict[str, Any]]
    flags: list[dict[str, Any]]
    package: dict[str, Any] | None


def package_rows(conn: psycopg.Connection, package_id: str) -> PackageRows:
    """The package's rows in this database (one facility shard), each kind in time order."""
    with conn.cursor(row_factory=dict_row) as cur:
        detections = cur.execute(
            "SELECT * FROM package_detections WHERE package_id = %s ORDER BY event_time, event_id LIMIT %s",
            (package_id, MAX_TIMELINE_ENTRIES),
        ).fetchall()
        assessments = cur.execute(
            "SELECT * FROM quality_assessments WHERE package_id = %s ORDER BY event_time, event_id LIMIT %s",
            (package_id, MAX_TIMELINE_ENTRIES),
        ).fetchall()
        flags = cur.execute(
            f"SELECT {_FLAG_COLUMNS} FROM anomaly_flags WHERE package_id = %s AND package_id <> '' "
            "ORDER BY flagged_at, anomaly_id LIMIT %s",
            (package_id, MAX_TIMELINE_ENTRIES),
        ).fetchall()
        package = cur.execute(
            "SELECT sku, facility_id, first_seen, last_seen FROM packages WHERE package_id = %s",
            (package_id,),
        ).fetchone()
    return PackageRows(detections, assessments, flags, package)


def merge_package_rows(parts: Sequence[PackageRows]) -> PackageRows:
    """One package's rows from several shards (it passed facilities on each) as one database would
    hold them: rows in time order, and the packages row of its latest sighting, first to last."""
    if len(parts) == 1:
        return parts[0]
    detections = sorted((r for p in parts for r in p.detections), key=itemgetter("event_time", "event_id"))
    assessments = sorted((r for p in parts for r in p.assessments), key=itemgetter("event_time", "event_id"))
    flags = sorted((r for p in parts for r in p.flags), key=itemgetter("flagged_at", "anomaly_id"))
    packages = [p.package for p in parts if p.package is not None]
    package = None
    if packages:
        latest = max(packages, key=itemgetter("last_seen"))
        package = {**latest, "first_seen": min(p["first_seen"] for p in packages)}
    return PackageRows(
        detections[:MAX_TIMELINE_ENTRIES],
        assessments[:MAX_TIMELINE_ENTRIES],
        flags[:MAX_TIMELINE_ENTRIES],
        package,
    )


def package_history(conn: psycopg.Connection, package_id: str) -> pb.PackageTimeline | None:
    """The package's detections, assessments and flags in time order; None if it was never seen."""
    return package_timeline(package_id, package_rows(conn, package_id))


def package_timeline(package_id: str, rows: PackageRows) -> pb.PackageTimeline | None:
    """The timeline message of ``rows``; None if they are empty (the package was never seen)."""
    detections, assessments, flags, package = rows.detections, rows.assessments, rows.flags, rows.package
    if not (detections or assessments or flags or package):
        return None
    # Same instant: the detection, then its assessment, then the flags it raised.
    entries: list[tuple[datetime, int, pb.TimelineEntry]] = []
    for row in detections:
        entries.append((row["event_time"], 0, pb.TimelineEntry(detection=_detection(row))))
    for row in assessments:
        entries.append((row["event_time"], 1, pb.TimelineEntry(assessment=_assessment(row))))
    for row in flags:
        entries.append((row["flagged_at"], 2, pb.TimelineEntry(anomaly=flag_message(row))))
    entries.sort(key=lambda item: (item[0], item[1]))
    times = [t for t, _, _ in entries]
    last = detections[-1] if detections else None
    timeline = pb.PackageTimeline(
        package_id=package_id,
        sku=package["sku"] if package else (last["sku"] if last else ""),
        facility_id=package["facility_id"]
        if package
        else (last["facility_id"] if last else flags[0]["facility_id"]),
    )
    first_seen = min([*times, package["first_seen"]] if package else times)
    last_seen = max([*times, package["last_seen"]] if package else times)
    timeline.first_seen.CopyFrom(to_timestamp(first_seen))
    timeline.last_seen.CopyFrom(to_timestamp(last_seen))
    for when, _, entry in entries:
        entry.time.CopyFrom(to_timestamp(when))
        timeline.entries.append(entry)
    return timeline


def anomaly_report(
    conn: psycopg.Connection, facility_id: str, start: datetime, end: datetime, max_flags: int = 0
) -> pb.AnomalyReport:
    """Counts by kind and severity of the facility's flags in ``[start, end)``, plus the newest ones."""
    limit = min(max_flags or DEFAULT_MAX_FLAGS, MAX_FLAGS)
    with conn.cursor(row_factory=dict_row) as cur:
        counts = cur.execute(
            "SELECT kind, severity, count(*) AS n FROM anomaly_flags "
            "WHERE facility_id = %s AND flagged_at >= %s AND flagged_at < %s "
            "GROUP BY kind, severity ORDER BY kind, severity",
            (facility_id, start, end),
        ).fetchall()
        flags = cur.execute(
            f"SELECT {_FLAG_COLUMNS} FROM anomaly_flags "
            "WHERE facility_id = %s AND flagged_at >= %s AND flagged_at < %s "
            "ORDER BY flagged_at DESC, anomaly_id LIMIT %s",
            (facility_id, start, end, limit),
        ).fetchall()
    report = pb.AnomalyReport(
        facility_id=facility_id,
        total=sum(r["n"] for r in counts),
        counts=[
            pb.AnomalyCount(kind=r["kind"], severity=SEVERITY_BY_NAME[r["severity"]], count=r["n"])
            for r in counts
        ],
        flags=[flag_message(r) for r in flags],
    )
    report.start.CopyFrom(to_timestamp(start))
    report.end.CopyFrom(to_timestamp(end))
    return report
