"""The embedded default adapter: ERP-importable CSV and JSON files under ``<state>/erp``.

Each message becomes ``outgoing/<business date>/<kind>/<key>.json`` (the payload) and ``<key>.csv``
(one row per claim, one row per zone line of a report), written atomically; re-delivering a
message rewrites the same two files, so the ERP import never sees a duplicate. The ERP's import
job confirms a record by writing ``acknowledged/<key>.json`` (``{"external_id": "..."}``); until
then the message is *sent*, afterwards *acknowledged*.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from assets.erp.base import Delivered, ErpAdapter, OutboxMessage, Outcome, Poison

CLAIM_COLUMNS = (
    "claim_id", "facility_id", "business_date", "package_id", "sku", "condition",
    "condition_confidence", "detected_at", "camera_id", "zone", "event_id", "model_version",
)  # fmt: skip
REPORT_COLUMNS = ("report_id", "facility_id", "business_date", "zone_id", "expected", "seen", "discrepancy")
_SAFE_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)
    os.replace(tmp, path)


def _csv(columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def csv_rows(message: OutboxMessage) -> tuple[Sequence[str], list[dict[str, Any]]]:
    """The CSV columns and rows of a message."""
    payload = message.payload
    if message.kind == "damage_claim":
        return CLAIM_COLUMNS, [dict(payload)]
    head = {k: payload[k] for k in ("report_id", "facility_id", "business_date")}
    return REPORT_COLUMNS, [head | line for line in payload["lines"]]


class FilesAdapter(ErpAdapter):
    """Writes ERP import files; delivery is *sent* until the ERP drops an acknowledgement file."""

    name = "files"
    max_batch = 500

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root

    def path_for(self, message: OutboxMessage, suffix: str) -> Path:
        kind_dir = f"{message.kind}s"
        return (
            self.root
            / "outgoing"
            / message.business_date.isoformat()
            / kind_dir
            / f"{message.idempotency_key}.{suffix}"
        )

    def deliver(self, messages: Sequence[OutboxMessage]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for message in messages:
            if not _SAFE_KEY.match(message.idempotency_key):
                outcomes.append(
                    Poison(f"idempotency key {message.idempotency_key!r} is not a safe file name")
                )
                continue
            try:
                columns, rows = csv_rows(message)
            except (KeyError, TypeError) as exc:
                outcomes.append(Poison(f"payload lacks {exc} for a {message.kind} file"))
                continue
            _atomic_write(
                self.path_for(message, "json"), json.dumps(message.payload, indent=2, sort_keys=True)
            )
            _atomic_write(self.path_for(message, "csv"), _csv(columns, rows))
            outcomes.append(Delivered(external_id=None, acknowledged=False))
        return outcomes

    def acknowledgements(self, keys: Iterable[str]) -> dict[str, str | None]:
        found: dict[str, str | None] = {}
        for key in keys:
            path = self.root / "acknowledged" / f"{key}.json"
            if path.is_file():
                try:
                    found[key] = json.loads(path.read_text(encoding="utf-8")).get("external_id")
                except (ValueError, AttributeError):
                    found[key] = None
        return found
