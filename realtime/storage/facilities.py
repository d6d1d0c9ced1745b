"""Facility reference rows: every configured facility must exist before events reference it."""

from __future__ import annotations

from collections.abc import Iterable

import psycopg


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
