"""Model registry: the ``model_versions`` table, its promotion history, and the production pointer.

A model version is an immutable directory. Its life cycle is
``candidate → production → retired`` (or ``rejected`` / ``rolled_back``); only a person moves a
model to production (``approve`` requires a name), and every move is a row in
``model_promotions``. The edge follows ``<models_dir>/production.json``, rewritten atomically
(temporary file + rename) after each committed change, so it never reads half a file.
"""

from __future__ import annotations

import builtins
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

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


class ModelRegistry:
    """Registry operations over one database and one models folder."""

    def __init__(self, database_url: str, models_dir: Path) -> None:
        self.database_url = database_url
        self.models_dir = Path(models_dir)

    @property
    def pointer_path(self) -> Path:
        return pointer_file(self.models_dir)

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

    def approve(self, version: str, by: str, reason: str = "") -> ModelVersion:
        """A person promotes ``version`` to production; the previous production model is retired.

        Refused for a candidate whose evaluation failed or is missing, except for the very first
        production model (nothing to compare it with).
        """
        by = by.strip()
        if not by:
            raise RegistryError("an approval needs the approver's name (--by NAME)")
        with self._connect() as conn:
            conn.execute("LOCK TABLE model_versions IN SHARE ROW EXCLUSIVE MODE")
            model = self._get(conn, version, lock=True)
            current = conn.execute(
                "SELECT version FROM model_versions WHERE status = 'production'"
            ).fetchone()
            previous = current["version"] if current else None
            if previous == version:
                raise RegistryError(f"{version} is already in production")
            if model.status not in ("candidate", "approved", "retired"):
                raise RegistryError(
                    f"{version} is {model.status}; only candidates or retired models can be approved"
                )
            if previous is not None and model.status == "candidate" and model.evaluation_passed is not True:
                state = "failed" if model.evaluation_passed is False else "has not run"
                raise RegistryError(
                    f"{version}: its candidate evaluation {state}; materialize candidate_evaluation first"
                )
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
        return promoted

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
