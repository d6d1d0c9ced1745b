"""The production pointer file `<models_dir>/production.json`, written atomically by the registry
(`realtime/storage/model_registry.py`); the edge only reads it.

    {"version": "v7", "path": "/abs/models/v7", "previous": "v6", "approved_by": ..., "updated_at": ...}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


class PointerError(ValueError):
    """The pointer file exists but cannot be used (not JSON, no version)."""


@dataclass(frozen=True)
class Pointer:
    version: str
    path: Path
    previous: str | None
    previous_path: Path | None


def read_pointer(file: Path) -> Pointer | None:
    """The pointer, or None when no model has been approved yet (no file)."""
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise PointerError(f"{file}: unreadable production pointer ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("version"), str) or not data["version"]:
        raise PointerError(f"{file}: production pointer without a version")
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
    )
