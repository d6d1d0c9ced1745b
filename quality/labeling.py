"""Verification tasks out, verified labels back: Prodigy JSONL and Label Studio JSON.

Export writes one task per sampled decision in both formats (annotators use whichever tool they
have); import reads answered files from either tool and yields ``(event_id, condition, verifier)``.
A malformed line or an unknown class is reported with its file and line and skipped; every valid
answer in the same file is still imported.

The edge ships no pixels, so a task carries a *crop reference* (camera, event time, frame index
when known, box); ``image`` is filled only where a crop could be rendered (synthetic cameras).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from contract.vocabulary import CONDITIONS

LABEL_FROM = "condition"
LABEL_TO = "image"
GROUND_TRUTH_VERIFIER = "ground-truth@simulator"


@dataclass(frozen=True)
class LabelTask:
    event_id: str
    facility_id: str
    camera_id: str
    package_id: str
    track_id: str
    event_time: str
    bbox: tuple[float, float, float, float]
    predicted: str
    confidence: float
    model_version: str
    frame_index: int | None = None
    image: str | None = None
    """Path of the rendered crop, None when no pixels are available."""

    def meta(self) -> dict[str, Any]:
        data = asdict(self)
        data["bbox"] = list(self.bbox)
        return data


@dataclass(frozen=True)
class Label:
    event_id: str
    condition: str
    verifier: str
    source: str
    """'prodigy', 'label-studio' or 'ground-truth'."""


@dataclass(frozen=True)
class LabelError:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def _options() -> list[dict[str, str]]:
    return [{"id": c, "text": c} for c in CONDITIONS]


# --- export -----------------------------------------------------------------------------------
def write_prodigy_tasks(tasks: Sequence[LabelTask], path: Path) -> Path:
    """Prodigy ``choice`` tasks, the model's answer pre-selected in ``accept``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for task in tasks:
            record = {
                "id": task.event_id,
                "text": f"{task.facility_id} {task.camera_id} package {task.package_id}: predicted "
                f"{task.predicted} ({task.confidence:.2f})",
                "options": _options(),
                "accept": [task.predicted],
                "meta": task.meta(),
            }
            if task.image:
                record["image"] = task.image
            handle.write(json.dumps(record) + "\n")
    return path


def label_studio_config() -> str:
    """The Label Studio labeling interface matching the exported tasks."""
    choices = "".join(f'<Choice value="{c}"/>' for c in CONDITIONS)
    return (
        f'<View><Image name="{LABEL_TO}" value="$image"/><Text name="meta" value="$summary"/>'
        f'<Choices name="{LABEL_FROM}" toName="{LABEL_TO}" choice="single" showInline="true">'
        f"{choices}</Choices></View>"
    )


def label_studio_result(condition: str) -> list[dict[str, Any]]:
    """A single-choice condition answer (or prediction) in Label Studio's result format."""
    return [
        {"from_name": LABEL_FROM, "to_name": LABEL_TO, "type": "choices", "value": {"choices": [condition]}}
    ]


def label_studio_task(task: LabelTask, image: str | None = None) -> dict[str, Any]:
    """One Label Studio task with the model's guess as a prediction; ``image`` overrides the crop path
    (a data URL when the task goes to a server through its API)."""
    return {
        "data": {
            **task.meta(),
            "image": image or task.image or "",
            "summary": f"{task.facility_id} {task.camera_id} package {task.package_id}: model says "
            f"{task.predicted} ({task.confidence:.2f})",
        },
        "predictions": [
            {
                "model_version": task.model_version,
                "score": task.confidence,
                "result": label_studio_result(task.predicted),
            }
        ],
    }


def write_label_studio_tasks(tasks: Sequence[LabelTask], path: Path) -> Path:
    """Label Studio import JSON (tasks with the model's prediction) plus ``labeling_config.xml``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    records = [label_studio_task(task) for task in tasks]
    path.write_text(json.dumps(records, indent=1), encoding="utf-8")
    (path.parent / "labeling_config.xml").write_text(label_studio_config(), encoding="utf-8")
    return path


# --- import -----------------------------------------------------------------------------------
def _checked(event_id: object, condition: object, where: tuple[str, int]) -> tuple[str, str] | LabelError:
    if not isinstance(event_id, str) or not event_id:
        return LabelError(*where, "missing event_id")
    if condition not in CONDITIONS:
        return LabelError(*where, f"unknown condition {condition!r}; expected one of {list(CONDITIONS)}")
    return event_id, str(condition)


def read_prodigy(path: Path) -> tuple[list[Label], list[LabelError]]:
    """Accepted single-choice answers of a Prodigy JSONL export; rejected/ignored ones are skipped."""
    labels: list[Label] = []
    errors: list[LabelError] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(LabelError(str(path), number, f"not JSON: {exc.msg}"))
            continue
        if record.get("answer") != "accept":
            continue
        accept = record.get("accept") or []
        if len(accept) != 1:
            errors.append(
                LabelError(str(path), number, f"expected exactly one accepted option, got {accept}")
            )
            continue
        event_id = record.get("id") or (record.get("meta") or {}).get("event_id")
        checked = _checked(event_id, accept[0], (str(path), number))
        if isinstance(checked, LabelError):
            errors.append(checked)
            continue
        verifier = str(record.get("_annotator_id") or record.get("_session_id") or "prodigy")
        labels.append(Label(checked[0], checked[1], verifier, "prodigy"))
    return labels, errors


def _annotator(annotation: Mapping[str, Any]) -> str:
    who = annotation.get("completed_by")
    if isinstance(who, Mapping):
        return str(who.get("email") or who.get("id") or "label-studio")
    return f"label-studio:{who}" if who is not None else "label-studio"


def read_label_studio(path: Path) -> tuple[list[Label], list[LabelError]]:
    """The latest non-cancelled annotation of every task in a Label Studio JSON export."""
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        return [], [LabelError(str(path), exc.lineno, f"not JSON: {exc.msg}")]
    if not isinstance(records, list):
        return [], [LabelError(str(path), 1, "expected a JSON list of tasks")]
    labels: list[Label] = []
    errors: list[LabelError] = []
    for number, record in enumerate(records, start=1):
        annotations = [a for a in record.get("annotations") or [] if not a.get("was_cancelled")]
        if not annotations:
            continue
        latest = annotations[-1]
        choices = [
            choice
            for result in latest.get("result") or []
            if result.get("from_name") == LABEL_FROM
            for choice in (result.get("value") or {}).get("choices") or []
        ]
        if len(choices) != 1:
            errors.append(
                LabelError(str(path), number, f"task needs exactly one '{LABEL_FROM}' choice, got {choices}")
            )
            continue
        checked = _checked((record.get("data") or {}).get("event_id"), choices[0], (str(path), number))
        if isinstance(checked, LabelError):
            errors.append(checked)
            continue
        who = _annotator(latest)
        source = "ground-truth" if who == GROUND_TRUTH_VERIFIER else "label-studio"
        labels.append(Label(checked[0], checked[1], who, source))
    return labels, errors


def read_labels(path: Path) -> tuple[list[Label], list[LabelError]]:
    """Answers from a Prodigy (``.jsonl``) or Label Studio (``.json``) export."""
    if path.suffix == ".jsonl":
        return read_prodigy(path)
    if path.suffix == ".json":
        return read_label_studio(path)
    return [], [LabelError(str(path), 0, "expected a Prodigy .jsonl or Label Studio .json export")]


# --- the demo's verifier ----------------------------------------------------------------------
def read_truth(paths: Iterable[Path]) -> tuple[dict[str, str], list[LabelError]]:
    """``package_id → condition`` from truth JSONL: lines ``{"package_id": ..., "condition": ...}`` or the
    simulator's per-frame sidecars ``{"index": ..., "packages": [{"package_id": ..., "condition": ...}]}``."""
    truth: dict[str, str] = {}
    errors: list[LabelError] = []
    for path in paths:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                errors.append(LabelError(str(path), number, f"not JSON: {exc.msg}"))
                continue
            for item in record.get("packages", [record]) if isinstance(record, dict) else [{}]:
                checked = _checked(item.get("package_id"), item.get("condition"), (str(path), number))
                if isinstance(checked, LabelError):
                    errors.append(checked)
                else:
                    truth[checked[0]] = checked[1]
    return truth, errors


def ground_truth_answers(tasks: Sequence[LabelTask], truth: Mapping[str, str], path: Path) -> int:
    """Answer the tasks whose package is in ``truth`` as a Label Studio export; returns how many.

    The simulator knows every package's condition, so in the demo it stands in for a person; the
    answers go through the same file import as a real annotator's.
    """
    answered = [
        {
            "data": task.meta(),
            "annotations": [
                {
                    "completed_by": {"email": GROUND_TRUTH_VERIFIER},
                    "was_cancelled": False,
                    "result": label_studio_result(truth[task.package_id]),
                }
            ],
        }
        for task in tasks
        if task.package_id in truth
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(answered, indent=1), encoding="utf-8")
    return len(answered)
