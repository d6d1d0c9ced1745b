"""Model versions for fault injection: copies of a version, the production pointer, verdicts.

The edge follows ``<models_dir>/production.json`` (written atomically, as the registry does) and
records every promotion, rejection and rollback in its ``model_status.json``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from contract.model_pointer import pointer_file, write_pointer


def make_version(models: Path, name: str, source: Path) -> Path:
    """A new version directory with the same files (a retrained model that agrees)."""
    return Path(shutil.copytree(source, models / name))


def point_to(models: Path, version: str, previous: str | None) -> None:
    """Point the edges at a version, through the registry's own writer."""
    write_pointer(pointer_file(models), version, models / version, previous)


def model_status(status: Path) -> dict:
    """The edge's model_status.json ({} while it is not written yet)."""
    try:
        return dict(json.loads(status.read_text()))
    except (OSError, ValueError):
        return {}


def has_verdict(status: Path, version: str, result: str) -> bool:
    """Whether the edge reached ``result`` (promoted, rejected, rolled_back, load_failed) for ``version``."""
    verdicts = model_status(status).get("verdicts", [])
    return any(v["version"] == version and v["result"] == result for v in verdicts)
