"""The canary pointer `<models_dir>/canary.json`: a version tried on some edges before the fleet.

    {"version": "cand-7", "path": "/abs/models/cand-7", "facilities": ["FAC-002"],
     "cameras": ["FAC-001/cam-2"], "started_by": "ana", "started_at": "2026-…"}

The model registry writes it (atomically) when ``wv model approve VERSION --canary …`` starts a
canary and deletes it when the canary ends: promoted to the whole fleet or rolled back. An edge
follows it instead of ``production.json`` when its facility is listed, or every one of its cameras
(``FACILITY/CAMERA``, or a bare camera id meaning that camera in any facility): one edge process
runs one model, so an edge with only some of its cameras listed stays on production.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from contract.model_pointer import read_json_pointer, write_json_atomic

CANARY_NAME = "canary.json"


@dataclass(frozen=True)
class Canary:
    version: str
    path: Path
    facilities: tuple[str, ...] = ()
    cameras: tuple[str, ...] = ()
    started_by: str | None = None
    started_at: str | None = None

    def covers(self, facility: str, cameras: Sequence[str]) -> bool:
        """Whether the edge of ``facility`` running ``cameras`` runs the canary."""
        if facility in self.facilities:
            return True
        listed = set(self.cameras)
        return bool(cameras) and all(c in listed or f"{facility}/{c}" in listed for c in cameras)

    def describe(self) -> str:
        return ", ".join([*self.facilities, *self.cameras])


def canary_file(models_dir: Path) -> Path:
    return Path(models_dir) / CANARY_NAME


def write_canary(file: Path, canary: Canary) -> None:
    if not canary.facilities and not canary.cameras:
        raise ValueError("a canary names at least one facility or camera")
    write_json_atomic(
        file,
        {
            "version": canary.version,
            "path": str(Path(canary.path).resolve()),
            "facilities": list(canary.facilities),
            "cameras": list(canary.cameras),
            "started_by": canary.started_by,
            "started_at": canary.started_at or datetime.now(UTC).isoformat(),
        },
    )


def clear_canary(file: Path) -> None:
    file.unlink(missing_ok=True)


def read_canary(file: Path) -> Canary | None:
    """The canary, or None when none runs (no file)."""
    data = read_json_pointer(file, "canary pointer")
    if data is None:
        return None
    path = Path(data.get("path") or data["version"])
    return Canary(
        version=data["version"],
        path=path if path.is_absolute() else file.parent / path,
        facilities=tuple(str(f) for f in data.get("facilities") or ()),
        cameras=tuple(str(c) for c in data.get("cameras") or ()),
        started_by=data.get("started_by"),
        started_at=data.get("started_at"),
    )
