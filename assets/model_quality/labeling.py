"""The labeling round trip shared by verified samples and hard examples.

Decisions are read from ``package_detections`` ⋈ ``quality_assessments``; tasks (with crops where
pixels exist) go out as Prodigy JSONL and Label Studio JSON files and, where a Label Studio server
is configured, into a project on it through its API; answered files (a project's export is saved as
one) come back from the labeling folder and set ``verified_condition`` on whichever table holds the
event.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from assets.common.resources import DatabaseResource
from assets.model_quality.crops import parse_synthetic_uri, write_crop
from assets.model_quality.label_studio import LabelStudio
from assets.model_quality.simulated_verifier import SimulatedVerifier
from quality.labeling import (
    LabelError,
    LabelTask,
    label_studio_config,
    label_studio_result,
    label_studio_task,
    read_labels,
    write_label_studio_tasks,
    write_prodigy_tasks,
)


@dataclass(frozen=True)
class Decision:
    event_id: str
    event_time: datetime
    facility_id: str
    camera_id: str
    track_id: str
    package_id: str
    model_version: str
    bbox: tuple[float, float, float, float]
    condition: str
    confidence: float
    embedding: list[float] | None


_DECISIONS = """
SELECT d.event_id, d.event_time, d.facility_id, d.camera_id, d.track_id, d.package_id, d.model_version,
       d.x1, d.y1, d.x2, d.y2, q.condition, q.condition_confidence, d.embedding
FROM package_detections d
JOIN quality_assessments q ON q.event_time = d.event_time AND q.event_id = d.event_id
WHERE d.kind = 'decision' AND d.event_time >= %(start)s AND d.event_time < %(end)s
  AND (%(facility)s::text IS NULL OR d.facility_id = %(facility)s)
  AND q.condition_confidence BETWEEN %(low)s AND %(high)s
ORDER BY d.event_time, d.event_id
"""


def load_decisions(
    database: DatabaseResource,
    start: datetime,
    end: datetime,
    facility: str | None = None,
    confidence: tuple[float, float] = (0.0, 1.0),
) -> list[Decision]:
    """Decisions in [start, end), optionally of one facility and a confidence band (both inclusive):
    from the facility's shard, or from every shard in time order (``WV_SHARD_MAP``)."""
    shards = database.shards()
    params = {"start": start, "end": end, "facility": facility, "low": confidence[0], "high": confidence[1]}
    rows: list[Any] = []
    for shard in [shards.shard_of(facility)] if facility else shards.names:
        with database.connect(shard=shard) as conn:
            rows += conn.execute(_DECISIONS, params).fetchall()
    rows.sort(key=lambda r: (r[1], r[0]))  # the query's order, across shards
    return [
        Decision(
            event_id=r[0],
            event_time=r[1],
            facility_id=r[2],
            camera_id=r[3],
            track_id=r[4],
            package_id=r[5],
            model_version=r[6],
            bbox=(float(r[7]), float(r[8]), float(r[9]), float(r[10])),
            condition=r[11],
            confidence=float(r[12]),
            embedding=list(r[13]) if r[13] is not None else None,
        )
        for r in rows
    ]


def camera_sources(conn: psycopg.Connection[Any]) -> dict[tuple[str, str], str | None]:
    return {
        (f, c): uri for f, c, uri in conn.execute("SELECT facility_id, camera_id, source_uri FROM cameras")
    }


@dataclass
class TaskBatch:
    tasks: list[LabelTask]
    crops: int
    prodigy: Path
    label_studio: Path


def build_tasks(
    decisions: Sequence[Decision],
    sources: dict[tuple[str, str], str | None],
    out_dir: Path,
    name: str,
    verifier: SimulatedVerifier | None = None,
) -> TaskBatch:
    """Tasks for ``decisions`` written in both formats under ``out_dir``; crops where pixels exist.

    A simulated verifier sees each frame rendered for a crop, so it never renders one twice (it renders
    the camera's frames before one only for a package that frame's truth lacks)."""
    tasks: list[LabelTask] = []
    for d in decisions:
        camera = parse_synthetic_uri(d.camera_id, sources.get((d.facility_id, d.camera_id)))
        image: str | None = None
        index: int | None = None
        if camera is not None:
            path = out_dir / "crops" / f"{d.event_id}.png"
            frame = write_crop(camera, d.event_time, d.bbox, path)
            image, index = str(path.resolve()), frame.index
            if verifier is not None:
                verifier.observe(d.package_id, d.bbox, frame, camera)
        tasks.append(
            LabelTask(
                event_id=d.event_id,
                facility_id=d.facility_id,
                camera_id=d.camera_id,
                package_id=d.package_id,
                track_id=d.track_id,
                event_time=d.event_time.isoformat(),
                bbox=d.bbox,
                predicted=d.condition,
                confidence=round(d.confidence, 4),
                model_version=d.model_version,
                frame_index=index,
                image=image,
            )
        )
    prodigy = write_prodigy_tasks(tasks, out_dir / f"{name}.prodigy.jsonl")
    label_studio = write_label_studio_tasks(tasks, out_dir / f"{name}.label-studio.json")
    crops = sum(1 for t in tasks if t.image)
    return TaskBatch(tasks, crops, prodigy, label_studio)


def data_url(path: str | None) -> str | None:
    """The crop inlined as a data URL, so a labeling server on another machine can show it."""
    if not path:
        return None
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


@dataclass
class PushSummary:
    project: int
    imported: int
    already_there: int
    annotated: int = 0


def push_tasks(
    client: LabelStudio, title: str, tasks: Sequence[LabelTask], truth: Mapping[str, str] | None = None
) -> PushSummary:
    """Put the tasks into the project ``title`` (created when missing; tasks already there by event id
    are left alone). ``truth`` (package_id → condition, the simulator's) then annotates every task
    still without an annotation, through the same API call an annotator's Submit makes."""
    project = client.project(title, label_studio_config())
    present = {str(t["data"].get("event_id")) for t in client.tasks(project)}
    new = [t for t in tasks if t.event_id not in present]
    client.import_tasks(project, [label_studio_task(t, data_url(t.image)) for t in new])
    summary = PushSummary(project, len(new), len(tasks) - len(new))
    if truth is None:
        return summary
    for task in client.tasks(project):
        condition = truth.get(str(task["data"].get("package_id")))
        if condition is not None and not task.get("total_annotations"):
            client.annotate(int(task["id"]), label_studio_result(condition))
            summary.annotated += 1
    return summary


def pull_answers(client: LabelStudio, title: str, path: Path) -> int:
    """Save the project's JSON export as an answer file (atomically); returns the tasks annotated."""
    exported = client.export(client.project(title, label_studio_config()))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(exported, indent=1), encoding="utf-8")
    partial.replace(path)
    return sum(1 for task in exported if task.get("annotations"))


@dataclass
class ImportSummary:
    files: int = 0
    labels: int = 0
    verified_samples: int = 0
    hard_examples: int = 0
    errors: list[LabelError] = field(default_factory=list)


_APPLY = """
UPDATE {table} t SET verified_condition = l.condition, verifier = l.verifier, label_source = l.source,
       verified_at = now()
FROM unnest(%(ids)s::text[], %(conditions)s::text[], %(verifiers)s::text[], %(sources)s::text[])
     AS l(event_id, condition, verifier, source)
WHERE t.event_id = l.event_id
  AND (t.verified_condition IS DISTINCT FROM l.condition OR t.verifier IS DISTINCT FROM l.verifier)
"""


def import_answers(conn: psycopg.Connection[Any], answers_dir: Path) -> ImportSummary:
    """Apply every answered Prodigy/Label Studio file under ``answers_dir``; unchanged labels are no-ops."""
    summary = ImportSummary()
    latest: dict[str, tuple[str, str, str]] = {}
    for path in sorted(p for p in answers_dir.rglob("*") if p.suffix in (".json", ".jsonl")):
        labels, errors = read_labels(path)
        summary.files += 1
        summary.errors.extend(errors)
        for label in labels:
            latest[label.event_id] = (label.condition, label.verifier, label.source)
    summary.labels = len(latest)
    if not latest:
        return summary
    params = {
        "ids": list(latest),
        "conditions": [v[0] for v in latest.values()],
        "verifiers": [v[1] for v in latest.values()],
        "sources": [v[2] for v in latest.values()],
    }
    with conn.transaction():
        summary.verified_samples = conn.execute(_APPLY.format(table="verified_samples"), params).rowcount
        summary.hard_examples = conn.execute(_APPLY.format(table="hard_examples"), params).rowcount
    return summary
