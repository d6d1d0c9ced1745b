"""Versioned SQL migrations: ``migrations/NNNN_name[.variant].sql`` applied in order, once.

A file without a variant always applies; ``.timescale.sql`` and ``.postgres.sql`` are two
implementations of one version, chosen by whether the server offers the ``timescaledb``
extension. Each migration runs in its own transaction and is recorded in ``schema_migrations``
with its checksum, so a second run is a no-op and an edited, already-applied file is an error.
A session advisory lock makes concurrent upgrades (two services starting at once) safe.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
Flavour = Literal["postgres", "timescale"]
# An arbitrary constant shared by every process that upgrades this schema.
_LOCK_KEY = 0x57565F4D4947  # "WV_MIG"
_FILE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)(?:\.(?P<variant>postgres|timescale))?\.sql$")
_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    variant     text,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(RuntimeError):
    """The migration files or the recorded history are inconsistent; nothing was changed."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    variant: Flavour | None
    path: Path

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}" + (f".{self.variant}" if self.variant else "")

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Applied:
    version: int
    name: str
    variant: str | None
    checksum: str


@dataclass(frozen=True)
class Status:
    flavour: Flavour
    applied: list[Applied]
    pending: list[Migration]


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every migration file in ``directory``, ordered by version; stray .sql names are errors."""
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: expected NNNN_name[.postgres|.timescale].sql")
        variant = match["variant"]
        found.append(Migration(int(match["version"]), match["name"], variant, path))  # type: ignore[arg-type]
    return sorted(found, key=lambda m: (m.version, m.variant or ""))


def plan(migrations: Iterable[Migration], flavour: Flavour) -> list[Migration]:
    """One migration per version: the plain file, or the variant for ``flavour``."""
    by_version: dict[int, list[Migration]] = {}
    for migration in migrations:
        by_version.setdefault(migration.version, []).append(migration)
    chosen = []
    for version, candidates in sorted(by_version.items()):
        plain = [m for m in candidates if m.variant is None]
        variants = [m for m in candidates if m.variant is not None]
        if (plain and variants) or len(plain) > 1 or len({m.name for m in candidates}) > 1:
            raise MigrationError(
                f"version {version:04d} has conflicting files: {[m.path.name for m in candidates]}"
            )
        match = plain or [m for m in variants if m.variant == flavour]
        if not match:
            raise MigrationError(f"version {version:04d} has no plain file and no .{flavour}.sql variant")
        chosen.append(match[0])
    return chosen


def server_flavour(conn: psycopg.Connection) -> Flavour:
    """``timescale`` when the server can install the timescaledb extension, else ``postgres``."""
    row = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
    return "timescale" if row else "postgres"


def ensure_database(conninfo: str) -> bool:
    """Create the target database from the server's maintenance database when it is missing.

    Returns True when it was created. Safe when another process creates it concurrently.
    """
    params = conninfo_to_dict(conninfo)
    dbname = str(params.get("dbname") or params.get("user") or "postgres")
    try:
        psycopg.connect(conninfo, connect_timeout=10).close()
        return False
    except psycopg.OperationalError as exc:
        if f'database "{dbname}" does not exist' not in str(exc):
            raise
    maintenance = make_conninfo(conninfo, dbname="postgres")
    with psycopg.connect(maintenance, autocommit=True, connect_timeout=10) as conn:
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        except psycopg.errors.DuplicateDatabase:
            return False
    return True


def _applied(conn: psycopg.Connection) -> list[Applied]:
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return []
    rows = conn.execute("SELECT version, name, variant, checksum FROM schema_migrations ORDER BY version")
    return [Applied(*row) for row in rows.fetchall()]


def _check_history(applied: list[Applied], available: list[Migration]) -> None:
    files = {(m.version, m.variant): m for m in available}
    for done in applied:
        migration = files.get((done.version, done.variant))  # type: ignore[arg-type]
        if migration is None:
            raise MigrationError(f"applied migration {done.version:04d}_{done.name} has no file any more")
        if migration.checksum != done.checksum:
            raise MigrationError(
                f"{migration.path.name} changed after it was applied (checksum differs); "
                "add a new migration instead of editing an applied one"
            )


def _status(conn: psycopg.Connection, directory: Path) -> Status:
    available = discover(directory)
    applied = _applied(conn)
    _check_history(applied, available)
    # A database keeps the flavour of its time-series migration even if the server changes.
    recorded = {a.variant for a in applied if a.variant}
    flavour: Flavour = recorded.pop() if len(recorded) == 1 else server_flavour(conn)  # type: ignore[assignment]
    done = {a.version for a in applied}
    pending = [m for m in plan(available, flavour) if m.version not in done]
    return Status(flavour, applied, pending)


def status(conninfo: str, directory: Path = MIGRATIONS_DIR) -> Status:
    """Applied and pending migrations of the database (which must exist)."""
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
        return _status(conn, directory)


def upgrade(conninfo: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Create the database if needed and apply pending migrations; returns the labels applied."""
    ensure_database(conninfo)
    applied_now: list[str] = []
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(_TABLE)
            for migration in _status(conn, directory).pending:
                with conn.transaction():
                    conn.execute(migration.sql.encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, variant, checksum)"
                        " VALUES (%s, %s, %s, %s)",
                        (migration.version, migration.name, migration.variant, migration.checksum),
                    )
                applied_now.append(migration.label)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now
