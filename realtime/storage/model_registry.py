"""Model registry: the ``model_versions`` table, its promotion history, and the production pointer.

A model version is an immutable directory. Its life cycle is
``candidate → production → retired`` (or ``rejected`` / ``rolled_back``); only a person moves a
model to production (``approve`` requires a name), and every move is a row in
``model_promotions``. The edge follows ``<models_dir>/production.json``, rewritten atomically
(temporary file + rename) after each committed change, so it never reads half a file.

A canary puts a version on some facilities or cameras first (``start_canary``: status
``approved``, ``<models_dir>/canary.json`` for the edges); it ends promoted fleet-wide by a person
(``approve``) or rolled back (``roll_back_canary``, automatically on a clear loss). Its start is an
``approve`` row and its rollback a ``rollback`` row of the canary version in ``model_promotions``,
the reason saying ``canary``.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from contract.canary_pointer import Canary, canary_file, clear_canary, read_canary, write_canary
from contract.model_pointer import Pointer, pointer_file, read_pointer, write_pointer

Status = Literal["candidate", "approved", "production", "retired", "rolled_back", "rejected"]
VERSION_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
"""What ``model_versions.version`` accepts (its CHECK constraint)."""


class RegistryError(RuntimeError):
    """A registry operation is not allowed in the current state; nothing was changed."""


@dataclass(frozen=True)
class ModelVersion:
    version: str
    config: str
    path: str
    status: Status
    parent_version: str | None
    metrics: dict[str, Any]
    created_at: datetime
    approved_by: str | None
    approved_at: datetime | None
    promoted_at: datetime | None
    notes: str

    @property
    def evaluation_passed(self) -> bool | None:
        """Outcome of the candidate evaluation, None when it was never evaluated."""
        evaluation = self.metrics.get("evaluation")
        return None if not isinstance(evaluation, dict) else bool(evaluation.get("passed"))


_COLUMNS = (
    "version, config, path, status, parent_version, metrics, created_at, approved_by, approved_at, "
    "promoted_at, notes"
)


def _resolve_targets(
    conn: psycopg.Connection[dict[str, Any]], targets: Sequence[str]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(facilities, cameras) named by ``targets``: a facility id, ``FACILITY/CAMERA`` or a bare camera
    id, each known to the ``facilities`` / ``cameras`` tables; anything else is refused by name."""
    known_facilities = {r["facility_id"] for r in conn.execute("SELECT facility_id FROM facilities")}
    known_cameras = {
        f"{r['facility_id']}/{r['camera_id']}"
        for r in conn.execute("SELECT facility_id, camera_id FROM cameras")
    }
    facilities: list[str] = []
    cameras: list[str] = []
    for target in (t.strip() for t in targets if t.strip()):
        if target in known_facilities:
            facilities.append(target)
        elif target in known_cameras or any(c.endswith(f"/{target}") for c in known_cameras):
            cameras.append(target)
        else:
            raise RegistryError(
                f"canary target {target!r} is neither a facility nor a camera (see `wv db cameras`)"
            )
    return tuple(dict.fromkeys(facilities)), tuple(dict.fromkeys(cameras))


class ModelRegistry:
    """Registry operations over one database and one models folder."""

    def __init__(self, database_url: str, models_dir: Path) -> None:
        self.database_url = database_url
        self.models_dir = Path(models_dir)

    @property
    def pointer_path(self) -> Path:
        return pointer_file(self.models_dir)

    @property
    def canary_path(self) -> Path:
        return canary_file(self.models_dir)

    def _connect(self) -> psycopg.Connection[dict[str, Any]]:
        return psycopg.connect(self.database_url, row_factory=dict_row, connect_timeout=10)

    def resolve(self, model: ModelVersion) -> Path:
        """The model directory; relative registry paths are relative to the models folder."""
        path = Path(model.path)
        return path if path.is_absolute() else self.models_dir / path

    # --- reading ---------------------------------------------------------------------------
    def get(self, version: str) -> ModelVersion:
        with self._connect() as conn:
            return self._get(conn, version)

    def _get(
        self, conn: psycopg.Connection[dict[str, Any]], version: str, lock: bool = False
    ) -> ModelVersion:
        row = conn.execute(
            f"SELECT {_COLUMNS} FROM model_versions WHERE version = %s" + (" FOR UPDATE" if lock else ""),
            (version,),
        ).fetchone()
        if row is None:
            raise RegistryError(f"model version {version!r} is not registered (see `wv model list`)")
        return ModelVersion(**row)

    def list(self, status: Status | None = None) -> list[ModelVersion]:
        with self._connect() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM model_versions WHERE %(s)s::text IS NULL OR status = %(s)s "
                "ORDER BY created_at, version",
                {"s": status},
            ).fetchall()
        return [ModelVersion(**row) for row in rows]

    def production(self) -> ModelVersion | None:
        found = self.list("production")
        return found[0] if found else None

    def history(self, version: str | None = None, after_id: int = 0) -> builtins.list[dict[str, Any]]:
        """Promotion rows (approvals and rollbacks), oldest first; ``id`` orders them."""
        with self._connect() as conn:
            return conn.execute(
                "SELECT id, version, previous, action, actor, reason, at FROM model_promotions "
                "WHERE (%(v)s::text IS NULL OR version = %(v)s) AND id > %(after)s ORDER BY id",
                {"v": version, "after": after_id},
            ).fetchall()

    # --- writing ---------------------------------------------------------------------------
    def register(
        self,
        version: str,
        path: Path | str,
        config: str,
        metrics: dict[str, Any] | None = None,
        parent_version: str | None = None,
        notes: str = "",
    ) -> ModelVersion:
        """Record a new candidate. Re-registering the same version with the same path is a no-op."""
        if not VERSION_PATTERN.fullmatch(version):
            raise RegistryError(
                f"version {version[:80]!r} must match {VERSION_PATTERN.pattern} (a directory name)"
            )
        resolved = Path(path) if Path(path).is_absolute() else self.models_dir / path
        if not resolved.is_dir():
            raise RegistryError(f"model directory {resolved} does not exist")
        with self._connect() as conn:
            try:
                row = conn.execute(
                    f"INSERT INTO model_versions (version, config, path, status, parent_version, metrics, notes) "
                    "VALUES (%s, %s, %s, 'candidate', %s, %s, %s) ON CONFLICT (version) DO NOTHING "
                    f"RETURNING {_COLUMNS}",
                    (version, config, str(path), parent_version, Jsonb(metrics or {}), notes),
                ).fetchone()
            except psycopg.errors.ForeignKeyViolation:
                raise RegistryError(f"parent version {parent_version!r} is not registered") from None
            if row is not None:
                return ModelVersion(**row)
            existing = self._get(conn, version)
        if existing.path != str(path):
            raise RegistryError(f"version {version!r} is already registered with path {existing.path}")
        return existing

    def update_metrics(self, version: str, metrics: dict[str, Any]) -> ModelVersion:
        """Merge ``metrics`` into the version's metrics (top-level keys replace)."""
        with self._connect() as conn:
            row = conn.execute(
                f"UPDATE model_versions SET metrics = metrics || %s WHERE version = %s RETURNING {_COLUMNS}",
                (Jsonb(metrics), version),
            ).fetchone()
        if row is None:
            raise RegistryError(f"model version {version!r} is not registered")
        return ModelVersion(**row)

    def reject(self, version: str, reason: str) -> ModelVersion:
        """Mark a candidate that failed its evaluation; it can no longer be approved."""
        with self._connect() as conn:
            model = self._get(conn, version, lock=True)
            if model.status != "candidate":
                raise RegistryError(f"only candidates can be rejected; {version} is {model.status}")
            row = conn.execute(
                "UPDATE model_versions SET status = 'rejected', notes = %s WHERE version = %s "
                f"RETURNING {_COLUMNS}",
                (reason, version),
            ).fetchone()
        return ModelVersion(**row)  # type: ignore[arg-type]

    def _promotable(
        self, conn: psycopg.Connection[dict[str, Any]], version: str
    ) -> tuple[ModelVersion, str | None]:
        """Lock the registry and check that ``version`` may reach edges (fleet-wide or as a canary):
        not in production already, no other canary running, a candidate only with a passed
        evaluation unless nothing is in production. Returns it and the production version."""
        conn.execute("LOCK TABLE model_versions IN SHARE ROW EXCLUSIVE MODE")
        model = self._get(conn, version, lock=True)
        current = conn.execute("SELECT version FROM model_versions WHERE status = 'production'").fetchone()
        production = current["version"] if current else None
        if production == version:
            raise RegistryError(f"{version} is already in production")
        canary = self.canary()
        if canary is not None and canary.version != version:
            raise RegistryError(
                f"canary {canary.version} runs on {canary.describe()}: promote it or roll it back first"
            )
        if model.status not in ("candidate", "approved", "retired"):
            raise RegistryError(
                f"{version} is {model.status}; only candidates or retired models can be approved"
            )
        if production is not None and model.status == "candidate" and model.evaluation_passed is not True:
            state = "failed" if model.evaluation_passed is False else "has not run"
            raise RegistryError(
                f"{version}: its candidate evaluation {state}; materialize candidate_evaluation first"
            )
        return model, production

    def approve(self, version: str, by: str, reason: str = "") -> ModelVersion:
        """A person promotes ``version`` to production; the previous production model is retired.

        Refused for a candidate whose evaluation failed or is missing, except for the very first
        production model (nothing to compare it with).
        """
        by = by.strip()
        if not by:
            raise RegistryError("an approval needs the approver's name (--by NAME)")
        with self._connect() as conn:
            _, previous = self._promotable(conn, version)
            if previous is not None:
                conn.execute("UPDATE model_versions SET status = 'retired' WHERE version = %s", (previous,))
            row = conn.execute(
                "UPDATE model_versions SET status = 'production', approved_by = %s, approved_at = now(), "
                f"promoted_at = now() WHERE version = %s RETURNING {_COLUMNS}",
                (by, version),
            ).fetchone()
            conn.execute(
                "INSERT INTO model_promotions (version, previous, action, actor, reason) "
                "VALUES (%s, %s, 'approve', %s, %s)",
                (version, previous, by, reason),
            )
            promoted = ModelVersion(**row)  # type: ignore[arg-type]
        self._write_pointer(promoted, previous, by)
        clear_canary(self.canary_path)  # the canary, if it was this version, now runs everywhere
        return promoted

    # --- canary ----------------------------------------------------------------------------
    def canary(self) -> Canary | None:
        """The version on trial on some edges, None when none is."""
        return read_canary(self.canary_path)

    def start_canary(self, version: str, by: str, targets: Sequence[str], reason: str = "") -> ModelVersion:
        """A person puts ``version`` on some facilities or cameras first (``targets``: facility ids,
        ``FACILITY/CAMERA`` or bare camera ids); the rest of the fleet stays on production. The
        same evaluation rule as ``approve`` applies."""
        by = by.strip()
        if not by:
            raise RegistryError("a canary needs the approver's name (--by NAME)")
        if not [t for t in targets if t.strip()]:
            raise RegistryError("a canary names at least one facility or camera (--canary FAC-002,FAC-003)")
        with self._connect() as conn:
            model, production = self._promotable(conn, version)
            if production is None:
                raise RegistryError("no model is in production: a canary is compared with production")
            facilities, cameras = _resolve_targets(conn, targets)
            canary = Canary(version, self.resolve(model), facilities, cameras, by)
            row = conn.execute(
                "UPDATE model_versions SET status = 'approved', approved_by = %s, approved_at = now(), "
                f"metrics = metrics || %s WHERE version = %s RETURNING {_COLUMNS}",
                (
                    by,
                    Jsonb({"canary": {"facilities": list(facilities), "cameras": list(cameras), "by": by}}),
                    version,
                ),
            ).fetchone()
            conn.execute(
                "INSERT INTO model_promotions (version, previous, action, actor, reason) "
                "VALUES (%s, %s, 'approve', %s, %s)",
                (
                    version,
                    production,
                    by,
                    f"canary on {canary.describe()}" + (f": {reason}" if reason else ""),
                ),
            )
            started = ModelVersion(**row)  # type: ignore[arg-type]
        write_canary(self.canary_path, canary)
        return started

    def roll_back_canary(self, by: str, reason: str, decision: dict[str, Any] | None = None) -> ModelVersion:
        """End the canary: its edges go back to production; the version becomes ``rolled_back``."""
        canary = self.canary()
        if canary is None:
            raise RegistryError("no canary is running")
        with self._connect() as conn:
            conn.execute("LOCK TABLE model_versions IN SHARE ROW EXCLUSIVE MODE")
            current = conn.execute(
                "SELECT version FROM model_versions WHERE status = 'production'"
            ).fetchone()
            row = conn.execute(
                "UPDATE model_versions SET status = 'rolled_back', notes = %s, metrics = metrics || %s "
                f"WHERE version = %s RETURNING {_COLUMNS}",
                (
                    reason,
                    Jsonb({"canary_decision": decision or {"verdict": "rollback", "by": by}}),
                    canary.version,
                ),
            ).fetchone()
            if row is None:
                raise RegistryError(f"canary version {canary.version} is not registered")
            conn.execute(
                "INSERT INTO model_promotions (version, previous, action, actor, reason) "
                "VALUES (%s, %s, 'rollback', %s, %s)",
                (
                    canary.version,
                    current["version"] if current else None,
                    by,
                    f"canary rolled back: {reason}",
                ),
            )
            ended = ModelVersion(**row)
        clear_canary(self.canary_path)
        return ended

    def rollback(self, by: str, reason: str = "") -> ModelVersion:
        """Restore the model that production replaced; the current one becomes ``rolled_back``."""
        by = by.strip()
        if not by:
            raise RegistryError("a rollback needs the operator's name (--by NAME)")
        with self._connect() as conn:
            conn.execute("LOCK TABLE model_versions IN SHARE ROW EXCLUSIVE MODE")
            current = conn.execute(
                "SELECT version FROM model_versions WHERE status = 'production'"
            ).fetchone()
            if current is None:
                raise RegistryError("no model is in production; nothing to roll back")
            bad = current["version"]
            last = conn.execute(
                "SELECT previous FROM model_promotions WHERE version = %s ORDER BY id DESC LIMIT 1", (bad,)
            ).fetchone()
            target = last["previous"] if last else None
            if target is None:
                raise RegistryError(f"{bad} has no previous production model to roll back to")
            before = conn.execute(
                "SELECT previous FROM model_promotions WHERE version = %s ORDER BY id DESC LIMIT 1", (target,)
            ).fetchone()
            conn.execute(
                "UPDATE model_versions SET status = 'rolled_back', notes = %s WHERE version = %s",
                (reason, bad),
            )
            row = conn.execute(
                f"UPDATE model_versions SET status = 'production', promoted_at = now() WHERE version = %s "
                f"RETURNING {_COLUMNS}",
                (target,),
            ).fetchone()
            conn.execute(
                "INSERT INTO model_promotions (version, previous, action, actor, reason) "
                "VALUES (%s, %s, 'rollback', %s, %s)",
                (target, before["previous"] if before else None, by, reason or f"rolled back {bad}"),
            )
            restored = ModelVersion(**row)  # type: ignore[arg-type]
            previous_after = before["previous"] if before else None
        self._write_pointer(restored, previous_after, by)
        return restored

    def _write_pointer(self, model: ModelVersion, previous: str | None, by: str) -> None:
        write_pointer(
            self.pointer_path, model.version, self.resolve(model), previous, model.approved_by or by
        )

    def read_pointer(self) -> Pointer | None:
        """The production pointer as the edge sees it, None before the first approval."""
        return read_pointer(self.pointer_path)
