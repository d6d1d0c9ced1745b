"""Marking the straggler fallback's detections that the late primary result replaced.

A batch the fallback answered is provisional: when the primary's own result for it arrives, the
edge sends primary-made detections whose ``supersedes`` names the fallback events of the same
frame and track (same ``event_time``). The replaced row is kept and gets ``superseded_by``, so
"current answers" is ``superseded_by IS NULL`` and the provisional answer stays readable. The two
rows can reach the database in either order (retries, two transports), so both directions are
checked: a replacing row marks what it names, and an arriving fallback row looks for a stored
replacement. Setting the same value again is harmless, so replays need no care.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import psycopg

from realtime.storage.rows import EVENT_COLUMNS

_AT = {name: i for i, (name, _) in enumerate(EVENT_COLUMNS)}
_ID, _TIME, _KIND, _FALLBACK, _SUPERSEDES = (
    _AT[n] for n in ("event_id", "event_time", "kind", "fallback", "supersedes")
)

_MARK_NAMED = """
    UPDATE package_detections d SET superseded_by = s.by
    FROM unnest(%s::timestamptz[], %s::text[], %s::text[]) AS s(t, id, by)
    WHERE d.event_time = s.t AND d.event_id = s.id AND d.superseded_by IS DISTINCT FROM s.by
"""
_MARK_ARRIVED = """
    UPDATE package_detections d SET superseded_by = s.event_id
    FROM unnest(%s::timestamptz[], %s::text[]) AS f(t, id)
    JOIN package_detections s ON s.event_time = f.t AND f.id = ANY(s.supersedes)
    WHERE d.event_time = f.t AND d.event_id = f.id AND d.superseded_by IS NULL
"""


def mark_superseded(cur: psycopg.Cursor, rows: Sequence[tuple[object, ...]]) -> None:
    """Mark superseded rows for a batch's replacing and fallback-detection rows (already written,
    same transaction)."""
    named: tuple[list[datetime], list[str], list[str]] = ([], [], [])
    arrived: tuple[list[datetime], list[str]] = ([], [])
    for row in rows:
        ids = row[_SUPERSEDES]
        if isinstance(ids, list):
            for old in ids:
                named[0].append(row[_TIME])  # type: ignore[arg-type]
                named[1].append(old)
                named[2].append(row[_ID])  # type: ignore[arg-type]
        elif row[_FALLBACK] and row[_KIND] == "detection":
            arrived[0].append(row[_TIME])  # type: ignore[arg-type]
            arrived[1].append(row[_ID])  # type: ignore[arg-type]
    if named[0]:
        cur.execute(_MARK_NAMED, named)
    if arrived[0]:
        cur.execute(_MARK_ARRIVED, arrived)
