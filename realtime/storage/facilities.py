"""Facility and camera reference rows: every facility and camera must exist before events
reference them (the centre dead-letters events of unknown ones: ``unknown_facility``,
``unknown_camera``).

The cameras are also the registry edges with ``cameras_from: registry`` follow (``ListCameras``):
a camera is switched off (``enabled``) rather than deleted, so the decisions its edge still sends
while stopping it are accepted; ``updated_at`` moves with every change."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql

REFERENCE_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
"""What the ``facilities`` and ``cameras`` tables accept as an id (their CHECK constraints)."""


class RegistrationError(ValueError):
    """A camera that cannot be registered: unknown facility or malformed id (one clear line)."""


@dataclass(frozen=True)
class Camera:
    facility_id: str
    camera_id: str
    source_uri: str | None = None
    description: str = ""
    enabled: bool = True
    updated_at: datetime | None = None


def ensure_facilities(conn: psycopg.Connection, facility_ids: Iterable[str], timezone: str = "UTC") -> int:
    """Insert the facilities that are missing (existing rows are left as they are); returns how many."""
    ids = list(dict.fromkeys(facility_ids))
    if not ids:
        return 0
    with conn.transaction():
        cur = conn.execute(
            """
            INSERT INTO facilities (facility_id, name, timezone)
            SELECT id, id, %s FROM unnest(%s::text[]) AS id
            ON CONFLICT (facility_id) DO NOTHING
            """,
            (timezone, ids),
        )
        return cur.rowcount


def ensure_cameras(conn: psycopg.Connection, cameras: Mapping[str, Iterable[str]]) -> int:
    """Register the missing cameras of ``{facility_id: [camera_id, ...]}`` (existing rows are left
    as they are; the facilities must exist); returns how many were added."""
    pairs = list(dict.fromkeys((f, c) for f, ids in cameras.items() for c in ids))
    if not pairs:
        return 0
    with conn.transaction():
        cur = conn.execute(
            """
            INSERT INTO cameras (facility_id, camera_id)
            SELECT * FROM unnest(%s::text[], %s::text[])
            ON CONFLICT (facility_id, camera_id) DO NOTHING
            """,
            ([f for f, _ in pairs], [c for _, c in pairs]),
        )
        return cur.rowcount


def _facility_exists(conn: psycopg.Connection, facility_id: str) -> bool:
    if not REFERENCE_ID.fullmatch(facility_id):
        return False  # the table could not hold it (and a NUL could not even be sent)
    row = conn.execute("SELECT 1 FROM facilities WHERE facility_id = %s", (facility_id,)).fetchone()
    return row is not None


def register_camera(
    conn: psycopg.Connection,
    facility_id: str,
    camera_id: str,
    *,
    source_uri: str | None = None,
    description: str | None = None,
) -> bool:
    """Add a camera, or update the given fields of a registered one (idempotent; fields left as
    None keep their value); a switched-off camera is switched on again. True if it was added.
    Raises :class:`RegistrationError` for an unknown facility or an id the table refuses."""
    if not REFERENCE_ID.fullmatch(camera_id):
        raise RegistrationError(f"camera id {camera_id!r} is not 1-64 letters, digits, '_', '.' or '-'")
    try:
        with conn.transaction():
            if not _facility_exists(conn, facility_id):
                raise RegistrationError(_unknown_facility(facility_id))
            row = conn.execute(
                """
                INSERT INTO cameras (facility_id, camera_id, source_uri, description)
                VALUES (%(facility)s, %(camera)s, %(source)s, coalesce(%(description)s, ''))
                ON CONFLICT (facility_id, camera_id) DO UPDATE SET
                    source_uri = coalesce(EXCLUDED.source_uri, cameras.source_uri),
                    description = coalesce(%(description)s, cameras.description),
                    enabled = true,
                    updated_at = now()
                RETURNING xmax = 0
                """,
                {
                    "facility": facility_id,
                    "camera": camera_id,
                    "source": source_uri,
                    "description": description,
                },
            ).fetchone()
    except psycopg.errors.ForeignKeyViolation:  # the facility was deleted meanwhile
        raise RegistrationError(_unknown_facility(facility_id)) from None
    except psycopg.DataError as exc:  # e.g. a NUL in the source or description
        raise RegistrationError(f"camera {camera_id}: {str(exc).strip().splitlines()[0]}") from None
    return bool(row and row[0])


def switch_off_camera(conn: psycopg.Connection, facility_id: str, camera_id: str) -> bool:
    """Stop a camera: its edges stop reading it, its events are still accepted. False if it was
    already off; RegistrationError if it is not registered."""
    missing = RegistrationError(f"camera {camera_id!r} of facility {facility_id!r} is not registered")
    if not (REFERENCE_ID.fullmatch(facility_id) and REFERENCE_ID.fullmatch(camera_id)):
        raise missing  # the table could not hold it (and a NUL could not even be sent)
    with conn.transaction():
        row = conn.execute(
            """
            WITH before AS (
                SELECT enabled FROM cameras WHERE facility_id = %(facility)s AND camera_id = %(camera)s
                FOR UPDATE
            )
            UPDATE cameras SET enabled = false, updated_at = now() FROM before
            WHERE facility_id = %(facility)s AND camera_id = %(camera)s
            RETURNING before.enabled
            """,
            {"facility": facility_id, "camera": camera_id},
        ).fetchone()
    if row is None:
        raise missing
    return bool(row[0])


def list_cameras(conn: psycopg.Connection, facility_id: str | None = None) -> list[Camera]:
    """Registered cameras, by facility then camera; ``facility_id`` must exist if given."""
    if facility_id is not None and not _facility_exists(conn, facility_id):
        raise RegistrationError(_unknown_facility(facility_id))
    rows = conn.execute(
        """
        SELECT facility_id, camera_id, source_uri, description, enabled, updated_at FROM cameras
        WHERE %(facility)s::text IS NULL OR facility_id = %(facility)s
        ORDER BY facility_id, camera_id
        """,
        {"facility": facility_id},
    ).fetchall()
    return [Camera(*row) for row in rows]


def _unknown_facility(facility_id: str) -> str:
    return f"unknown facility {facility_id!r} (add it to WV_FACILITIES and run `wv db upgrade`)"


_CATALOGUE = (
    ("facilities", ("facility_id",), ("name", "timezone", "expected_daily_packages")),
    (
        "zones",
        ("facility_id", "zone_id"),
        ("kind", "next_zone_id", "max_dwell_seconds", "expected_daily_packages"),
    ),
    ("cameras", ("facility_id", "camera_id"), ("source_uri", "description", "enabled", "updated_at")),
)
"""The registry a shard mirrors from the home shard: table, key columns, other columns."""


def mirror_catalogue(source: psycopg.Connection, target: psycopg.Connection) -> int:
    """Make ``target``'s facilities, zones and cameras those of ``source`` (the home shard), in one
    transaction; returns the rows added, changed or removed. Facilities are added and updated but
    never removed (stored events reference them); zones and cameras gone from the source go."""
    changed = 0
    with target.transaction(), target.cursor() as cur:
        for table, keys, values in _CATALOGUE:
            columns = sql.SQL(", ").join(map(sql.Identifier, (*keys, *values)))
            rows = source.execute(
                sql.SQL("SELECT {} FROM {}").format(columns, sql.Identifier(table))
            ).fetchall()
            stage = sql.Identifier(f"wv_mirror_{table}")
            cur.execute(
                sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(
                    stage, sql.Identifier(table)
                )
            )
            with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(stage, columns)) as copy:
                for row in rows:
                    copy.write_row(row)
            ours = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(v)) for v in values)
            theirs = sql.SQL(", ").join(sql.SQL("excluded.{}").format(sql.Identifier(v)) for v in values)
            cur.execute(
                sql.SQL(
                    "INSERT INTO {table} AS t ({columns}) SELECT {columns} FROM {stage} "
                    "ON CONFLICT ({keys}) DO UPDATE SET ({values}) = ROW({theirs}) "
                    "WHERE ({ours}) IS DISTINCT FROM ({theirs})"
                ).format(
                    table=sql.Identifier(table),
                    columns=columns,
                    stage=stage,
                    keys=sql.SQL(", ").join(map(sql.Identifier, keys)),
                    values=sql.SQL(", ").join(map(sql.Identifier, values)),
                    ours=ours,
                    theirs=theirs,
                )
            )
            changed += max(cur.rowcount, 0)
            if table != "facilities":
                match = sql.SQL(" AND ").join(
                    sql.SQL("s.{k} = t.{k}").format(k=sql.Identifier(k)) for k in keys
                )
                cur.execute(
                    sql.SQL("DELETE FROM {} t WHERE NOT EXISTS (SELECT 1 FROM {} s WHERE {})").format(
                        sql.Identifier(table), stage, match
                    )
                )
                changed += max(cur.rowcount, 0)
    return changed
