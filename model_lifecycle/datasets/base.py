"""What every dataset format plugs into: source records, condition rules, the problem report.

A format's reader turns its files into `SourceImage`s (boxes in pixels, or normalised when the
format stores them so) and reports what it cannot parse; `importer.import_dataset` checks every
image and box the same way for all formats and writes the project's layout. A format's writer
turns a project dataset into its files.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

from contract.vocabulary import CONDITIONS

IGNORE = "ignore"
"""A `--map` target that drops a class on purpose (counted as `ignored_box`)."""

BoxPolicy = Literal["clip", "refuse"]


@dataclass
class SourceBox:
    x1: float
    y1: float
    x2: float
    y2: float
    label: str
    where: str
    """Where the box is written, e.g. `annotation id 7` or `line 3`."""
    attributes: dict[str, str] = field(default_factory=dict)
    package_id: str | None = None
    """Track / package identity when the source has one (keeps a package on one side of a split)."""


@dataclass
class SourceImage:
    key: str
    """The image's id in the source (duplicates are refused)."""
    file: str
    """The annotation file that describes it (for the report)."""
    where: str
    """Its place in that file, e.g. `image id 3`, `task 12`."""
    path: Path | None
    boxes: list[SourceBox] = field(default_factory=list)
    normalized: bool = False
    """Boxes in [0, 1] of the image size (YOLO, Label Studio) instead of pixels."""
    width: int | None = None
    height: int | None = None
    """Declared size, checked against the file when given."""
    camera_id: str | None = None
    split: str | None = None


@dataclass(frozen=True)
class Issue:
    kind: str
    file: str
    where: str
    message: str
    error: bool = True

    def __str__(self) -> str:
        level = "error" if self.error else "note"
        return f"{self.file}: {self.where}: {level}: {self.message}"


@dataclass
class Report:
    """Every problem found, each with file and line/id, and the counts of what was done."""

    format: str
    source: str
    issues: list[Issue] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)

    def error(self, kind: str, file: str, where: str, message: str) -> None:
        self.issues.append(Issue(kind, file, where, message, True))
        self.counts[kind] += 1

    def note(self, kind: str, file: str, where: str, message: str) -> None:
        self.issues.append(Issue(kind, file, where, message, False))
        self.counts[kind] += 1

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.error]

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))

    def lines(self, limit: int = 20) -> Iterator[str]:
        """Issue lines, at most `limit` per kind, then the summary counts."""
        shown: Counter[str] = Counter()
        for issue in self.issues:
            shown[issue.kind] += 1
            if shown[issue.kind] <= limit:
                yield str(issue)
            elif shown[issue.kind] == limit + 1:
                yield f"… more {issue.kind} issues (see the counts)"
        yield "summary: " + ", ".join(f"{k} {v}" for k, v in self.summary().items())

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "source": self.source,
            "ok": self.ok,
            "counts": self.summary(),
            "issues": [
                {"kind": i.kind, "file": i.file, "where": i.where, "message": i.message, "error": i.error}
                for i in self.issues
            ],
        }


class ImportFailed(Exception):
    """The import found errors; nothing was written to the destination."""

    def __init__(self, report: Report) -> None:
        super().__init__(f"{len(report.errors)} errors in {report.source}; nothing imported")
        self.report = report


@dataclass(frozen=True)
class ConditionRules:
    """How a box gets its condition (`ok crushed torn wet open`).

    1. a per-box attribute named `attribute` (CVAT/COCO `attributes`, VOC `<attribute>`, a Label
       Studio choice on the region or the task), its value passed through `mapping`;
    2. else the class name: `mapping[name]` if given (a condition, or `ignore` to drop the box),
       a bare condition word (`crushed`), or a `<type>_<condition>` name (`parcel_crushed`,
       `box-wet`); the part before the condition becomes the package type;
    3. else `default` (e.g. `ok`) when the user gave one; otherwise the class is unknown, an error.
    """

    mapping: Mapping[str, str] = field(default_factory=dict)
    attribute: str = "condition"
    default: str | None = None

    def __post_init__(self) -> None:
        for name, target in [*self.mapping.items(), ("default", self.default or "ok")]:
            if target not in (*CONDITIONS, IGNORE):
                raise ValueError(
                    f"{name!r} maps to {target!r}: use one of {', '.join(CONDITIONS)} or {IGNORE}"
                )

    def _value(self, text: str) -> str | None:
        text = self.mapping.get(text, text)
        low = text.strip().lower()
        return low if low in (*CONDITIONS, IGNORE) else None

    def package_type(self, label: str) -> str:
        low = label.strip().lower()
        for sep in ("_", "-", " "):
            head, _, tail = low.rpartition(sep)
            if head and tail in CONDITIONS:
                return head
        return "package" if low in CONDITIONS else low

    def from_name(self, label: str) -> str | None:
        """The condition (or IGNORE) a class name carries, None when it carries none."""
        if label in self.mapping:
            return self.mapping[label]
        low = label.strip().lower()
        if low in CONDITIONS:
            return low
        for sep in ("_", "-", " "):
            head, _, tail = low.rpartition(sep)
            if head and tail in CONDITIONS:
                return tail
        return None

    def resolve(self, label: str, attributes: Mapping[str, str]) -> tuple[str | None, str | None]:
        """(condition or IGNORE, None) or (None, problem kind: `unknown_condition` / `unknown_class`)."""
        if self.attribute in attributes and str(attributes[self.attribute]).strip():
            value = self._value(str(attributes[self.attribute]))
            return (value, None) if value else (None, "unknown_condition")
        named = self.from_name(label)
        if named is not None:
            return named, None
        if self.default is not None:
            return self.default, None
        return None, "unknown_class"


@dataclass(frozen=True)
class ImportOptions:
    rules: ConditionRules = field(default_factory=ConditionRules)
    boxes: BoxPolicy = "clip"
    """Boxes reaching outside the image: `clip` (and count) or `refuse` (an error)."""
    images: Path | None = None
    """Where the image files are when the annotation file does not say (default: beside it)."""
    camera_id: str = "imported"
    split: str | None = None
    """Only this split of a format that has several (YOLO `train`/`val`/`test`)."""


class Reader(Protocol):
    name: ClassVar[str]

    def read(self, source: Path, options: ImportOptions, report: Report) -> Iterable[SourceImage]: ...


class Writer(Protocol):
    name: ClassVar[str]

    def write(self, dataset: Path, out: Path, val_fraction: float) -> dict[str, Any]:
        """Write the project dataset `dataset` into the (empty, temporary) folder `out`."""
        ...


def find_image(name: str, roots: Iterable[Path]) -> Path | None:
    """The first existing `root/name`, then `root/<basename>` (tools often store absolute paths)."""
    candidates = [Path(name)] if Path(name).is_absolute() else []
    for root in roots:
        candidates += [root / name, root / Path(name).name]
    return next((c for c in candidates if c.is_file()), None)
