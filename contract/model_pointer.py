"""The production pointer file `<models_dir>/production.json`: its schema, its one writer, its one reader.

The model registry writes it (atomically) after every committed promotion or rollback; the edge
follows it for hot-swaps. Readers see the old file or the new one, never half of either.

    {"version": "v7", "path": "/abs/models/v7", "previous": "v6", "approved_by": ..., "updated_at": ...}
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

POINTER_NAME = "production.json"


class PointerError(ValueError):
    """The pointer file exists but cannot be used (not JSON, no version)."""


@dataclass(frozen=True)
class Pointer:
    version: str
    path: Path
    previous: str | None
    previous_path: Path | None
    approved_by: str | None = None
    updated_at: str | None = None


def pointer_file(models_dir: Path) -> Path:
    """Where the pointer of a models folder lives."""
    return Path(models_dir) / POINTER_NAME


def write_pointer(
    file: Path, version: str, path: Path, previous: str | None, approved_by: str | None = None
) -> None:
    """Point the edges at `path` (made absolute), remembering `previous` for rollbacks."""
    write_json_atomic(
        file,
        {
            "version": version,
            "path": str(Path(path).resolve()),
            "previous": previous,
            "approved_by": approved_by,
            "updated_at": datetime.now(UTC).isoformat(),
        },
    )


def read_pointer(file: Path) -> Pointer | None:
    """The pointer, or None when no model has been approved yet (no file)."""
    data = read_json_pointer(file, "production pointer")
    if data is None:
        return None
    base = file.parent
    path = Path(data.get("path") or data["version"])
    previous = data.get("previous") or None
    previous_path = None
    if previous:
        candidate = base / str(previous)
        previous_path = candidate if candidate.is_dir() else None
    return Pointer(
        version=data["version"],
        path=path if path.is_absolute() else base / path,
        previous=str(previous) if previous else None,
        previous_path=previous_path,
        approved_by=data.get("approved_by"),
        updated_at=data.get("updated_at"),
    )


def read_json_pointer(file: Path, what: str) -> dict[str, Any] | None:
    """A pointer file's JSON object with its non-empty ``version``; None when there is no file."""
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise PointerError(f"{file}: unreadable {what} ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("version"), str) or not data["version"]:
        raise PointerError(f"{file}: {what} without a version")
    return data


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON so readers see the old or the new file, never a partial one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
