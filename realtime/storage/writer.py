"""The one write path into the time-series tables, used by Kafka ingest, gRPC and the rules.

A batch is staged with binary COPY into session temp tables, then moved into
``package_detections``, ``quality_assessments`` (one per decision), ``anomaly_flags`` and
``packages`` by a single statement with ``ON CONFLICT DO NOTHING``, together with its dead
letters, in ONE transaction: a batch is visible entirely or not at all, and a replayed batch
adds nothing (the idempotency keys are ``(event_time, event_id)`` and ``(flagged_at, anomaly_id)``).
That idempotency is for replays of the SAME message (an edge re-sending what was not acknowledged,
a consumer re-reading offsets it had not committed, a rule pass re-judging its overlap): each flag
reaches this writer on one path only (edge flags inside their event, rule flags from the rules
runner), and the write reports which flags were new so only those are announced.

Fast path: almost no batch holds replays, so detections and assessments are first COPYed
straight into their tables inside a savepoint (about twice as fast as staging and moving
them), and only the decisions are staged, for the ``packages`` upsert. A unique violation there
means the batch holds replays: the savepoint is rolled back and the batch takes the staged
``ON CONFLICT`` path, as do the next few batches (replays come in runs after a restart).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from contract.proto import warehouse_vision_pb2 as pb
from realtime.codec import Reason, Rejection
from realtime.storage.rows import (
    DECISION_COLUMNS,
    EVENT_COLUMNS,
    FLAG_COLUMNS,
    NO_ASSESSMENT,
    QA_COLUMNS,
    STAGE_COLUMNS,
    BatchRows,
    assessment_row,
    decision_row,
    qa_row,
)
from realtime.storage.supersede import mark_superseded

DECISION = pb.EVENT_KIND_DECISION

log = logging.getLogger(__name__)

STAGE_EVENTS = "wv_stage_events"
STAGE_DECISIONS = "wv_stage_decisions"
STAGE_FLAGS = "wv_stage_flags"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A rejection plus where it came from (``source`` is the topic, or ``grpc``)."""

    rejection: Rejection
    source: str
    partition: int | None = None
    offset: int | None = None


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What one write did; ``*_duplicates`` were already stored (replays) or repeated in the batch."""

    events: int = 0
    events_written: int = 0
    assessments_written: int = 0
    flags: int = 0
    flags_written: int = 0
    packages_upserted: int = 0
    dead_letters_written: int = 0
    rejected: tuple[DeadLetter, ...] = field(default=())
    """Events the database itself refused (found by :func:`write_isolating`), dead-lettered too."""
    new_flag_ids: frozenset[str] = frozenset()
    """Ids of the flags this write stored (not already there): what may be announced as new."""

    @property
    def event_duplicates(self) -> int:
        return self.events - self.events_written

    @property
    def flag_duplicates(self) -> int:
        return self.flags - self.flags_written

    def __add__(self, other: WriteResult) -> WriteResult:
        return WriteResult(
            self.events + other.events,
            self.events_written + other.events_written,
            self.assessments_written + other.assessments_written,
            self.flags + other.flags,
            self.flags_written + other.flags_written,
            self.packages_upserted + other.packages_upserted,
            self.dead_letters_written + other.dead_letters_written,
            self.rejected + other.rejected,
            self.new_flag_ids | other.new_flag_ids,
        )


def _names(columns: Iterable[tuple[str, str]]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(name) for name, _ in columns)


_STAGE_DDL = sql.SQL(
    """
    CREATE TEMP TABLE IF NOT EXISTS {events} (LIKE package_detections) ON COMMIT DELETE ROWS;
    ALTER TABLE {events} ALTER COLUMN ingested_at DROP NOT NULL,
        ADD COLUMN IF NOT EXISTS condition text, ADD COLUMN IF NOT EXISTS p_ok real,
        ADD COLUMN IF NOT EXISTS p_crushed real, ADD COLUMN IF NOT EXISTS p_torn real,
        ADD COLUMN IF NOT EXISTS p_wet real, ADD COLUMN IF NOT EXISTS p_open real,
        ADD COLUMN IF NOT EXISTS condition_confidence real;
    CREATE TEMP TABLE IF NOT EXISTS {decisions} (
        event_time timestamptz, event_id text, package_id text, facility_id text, sku text,
        expected_zone text, zone text, condition text, first_seen timestamptz
    ) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE IF NOT EXISTS {flags} (LIKE anomaly_flags) ON COMMIT DELETE ROWS;
    ALTER TABLE {flags} ALTER COLUMN evidence TYPE text;
    """
).format(
    events=sql.Identifier(STAGE_EVENTS),
    decisions=sql.Identifier(STAGE_DECISIONS),
    flags=sql.Identifier(STAGE_FLAGS),
)


def _copy_into(table: str, columns: Iterable[tuple[str, str]]) -> sql.Composed:
    return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(sql.Identifier(table), _names(columns))


_COPY_DETECTIONS = _copy_into("package_detections", EVENT_COLUMNS)
_COPY_ASSESSMENTS = _copy_into("quality_assessments", QA_COLUMNS)
_COPY_STAGE_EVENTS = _copy_into(STAGE_EVENTS, STAGE_COLUMNS)
_COPY_STAGE_DECISIONS = _copy_into(STAGE_DECISIONS, DECISION_COLUMNS)
_COPY_STAGE_FLAGS = _copy_into(STAGE_FLAGS, FLAG_COLUMNS)

# Replay-safe path: move staged events with ON CONFLICT DO NOTHING and stage, for the packages
# upsert, only the decisions that were new (so a replay never counts a decision twice).
_MOVE_STAGED = sql.SQL(
    """
    WITH det AS (
        INSERT INTO package_detections ({event_cols}) SELECT {event_cols} FROM {events}
        ON CONFLICT DO NOTHING RETURNING 1
    ), qa AS (
        INSERT INTO quality_assessments ({qa_cols}) SELECT {qa_cols} FROM {events} WHERE kind = 'decision'
        ON CONFLICT DO NOTHING RETURNING event_time, event_id
    ), dec AS (
        INSERT INTO {decisions} ({decision_cols}) SELECT {decision_cols} FROM qa JOIN {events} USING (event_time, event_id)
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM det), (SELECT count(*) FROM qa), (SELECT count(*) FROM dec)
    """
).format(
    events=sql.Identifier(STAGE_EVENTS),
    decisions=sql.Identifier(STAGE_DECISIONS),
    event_cols=_names(EVENT_COLUMNS),
    qa_cols=_names(QA_COLUMNS),
    decision_cols=_names(DECISION_COLUMNS),
)

# Both paths end here: packages from the staged new decisions (latest decision wins, whatever
# the arrival order), then the staged flags.
_FINISH = sql.SQL(
    """
    WITH pkg AS (
        INSERT INTO packages AS p (package_id, facility_id, sku, expected_zone, last_zone,
            last_condition, first_seen, last_seen, decisions)
        SELECT package_id,
            (array_agg(facility_id ORDER BY event_time DESC))[1],
            (array_agg(sku ORDER BY event_time DESC))[1],
            (array_agg(expected_zone ORDER BY event_time DESC))[1],
            (array_agg(zone ORDER BY event_time DESC))[1],
            (array_agg(condition ORDER BY event_time DESC))[1],
            min(coalesce(first_seen, event_time)), max(event_time), count(*)
        FROM {decisions}
        GROUP BY package_id
        ORDER BY package_id  -- one lock order for concurrent writers: no deadlocks
        ON CONFLICT (package_id) DO UPDATE SET
            first_seen = least(p.first_seen, excluded.first_seen),
            last_seen = greatest(p.last_seen, excluded.last_seen),
            decisions = p.decisions + excluded.decisions,
            facility_id = CASE WHEN excluded.last_seen >= p.last_seen
                THEN excluded.facility_id ELSE p.facility_id END,
            sku = CASE WHEN excluded.last_seen >= p.last_seen THEN excluded.sku ELSE p.sku END,
            expected_zone = CASE WHEN excluded.last_seen >= p.last_seen
                THEN excluded.expected_zone ELSE p.expected_zone END,
            last_zone = CASE WHEN excluded.last_seen >= p.last_seen
                THEN excluded.last_zone ELSE p.last_zone END,
            last_condition = CASE WHEN excluded.last_seen >= p.last_seen
                THEN excluded.last_condition ELSE p.last_condition END
        RETURNING 1
    ), fl AS (
        INSERT INTO anomaly_flags ({flag_cols}) SELECT {flag_select} FROM {flags}
        ON CONFLICT DO NOTHING RETURNING anomaly_id
    )
    SELECT (SELECT count(*) FROM pkg), (SELECT coalesce(array_agg(anomaly_id), '{{}}') FROM fl)
    """
).format(
    decisions=sql.Identifier(STAGE_DECISIONS),
    flags=sql.Identifier(STAGE_FLAGS),
    flag_cols=_names(FLAG_COLUMNS),
    flag_select=sql.SQL(", ").join(
        sql.SQL("{}::jsonb").format(sql.Identifier(n)) if n == "evidence" else sql.Identifier(n)
        for n, _ in FLAG_COLUMNS
    ),
)

_INSERT_DEAD_LETTER = """
    INSERT INTO dead_letters
        (source, source_partition, source_offset, source_item, reason, event_id, facility_id, raw)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT DO NOTHING
"""


def prepare(conn: psycopg.Connection) -> None:
    """Create this session's staging tables; call once per new connection."""
    with conn.transaction():
        conn.execute(_STAGE_DDL)


def _copy(
    cur: psycopg.Cursor, statement: sql.Composed, columns: Sequence[tuple[str, str]], rows: Iterable[tuple]
) -> None:
    with cur.copy(statement) as copy:
        copy.set_types([t for _, t in columns])
        for row in rows:
            copy.write_row(row)


class EventWriter:
    """Writes batches through one connection; keeps the fast-path state between batches.

    The connection must have been through :func:`prepare`. Errors are psycopg's, unchanged:
    ``OperationalError`` means "retry later"; ``DataError``/``IntegrityError`` mean a row the
    database refuses, which :meth:`write_rows_isolating` turns into dead letters.
    """

    STAGED_AFTER_CONFLICT = 8
    """Batches that skip the fast path after one met a replayed event."""

    def __init__(self, *, fast_path: bool = True) -> None:
        self._fast_path = fast_path
        self._staged_left = 0

    def write(
        self,
        conn: psycopg.Connection,
        events: Sequence[pb.DetectionEvent],
        flags: Sequence[pb.AnomalyFlag] = (),
        dead_letters: Sequence[DeadLetter] = (),
    ) -> WriteResult:
        """Store events (with their embedded flags), standalone flags and dead letters atomically."""
        return self.write_rows(conn, BatchRows.of(events, flags), dead_letters)

    def write_rows(
        self, conn: psycopg.Connection, batch: BatchRows, dead_letters: Sequence[DeadLetter] = ()
    ) -> WriteResult:
        """:meth:`write` for a batch whose rows are already built."""
        rows, decided, flag_rows = batch.rows, batch.decided, batch.flag_rows
        with conn.transaction(), conn.cursor() as cur:
            if rows and self._copied(conn, cur, rows, decided):
                written = (len(rows), len(decided))
                _copy(cur, _COPY_STAGE_DECISIONS, DECISION_COLUMNS, (decision_row(*d) for d in decided))
            elif rows:
                stage = (
                    (*row, *(assessment_row(e) if e.kind == DECISION else NO_ASSESSMENT))
                    for e, row in zip(batch.events, rows, strict=True)
                )
                _copy(cur, _COPY_STAGE_EVENTS, STAGE_COLUMNS, stage)
                moved = cur.execute(_MOVE_STAGED).fetchone()
                written = (moved[0], moved[1]) if moved else (0, 0)
            else:
                written = (0, 0)
            if batch.supersede_rows:
                mark_superseded(cur, batch.supersede_rows)
            if flag_rows:
                _copy(cur, _COPY_STAGE_FLAGS, FLAG_COLUMNS, flag_rows)
            finished = cur.execute(_FINISH).fetchone() if (decided or flag_rows) else None
            dead_written = self._dead_letters(cur, dead_letters)
        return WriteResult(
            events=len(rows),
            events_written=written[0],
            assessments_written=written[1],
            packages_upserted=finished[0] if finished else 0,
            flags=len(flag_rows),
            flags_written=len(finished[1]) if finished else 0,
            dead_letters_written=dead_written,
            new_flag_ids=frozenset(finished[1]) if finished else frozenset(),
        )

    def _copied(
        self,
        conn: psycopg.Connection,
        cur: psycopg.Cursor,
        rows: list[tuple],
        decided: list[tuple[tuple, tuple]],
    ) -> bool:
        """COPY straight into the tables unless replays are expected; False: use the staged path."""
        if not self._fast_path:
            return False
        if self._staged_left:
            self._staged_left -= 1
            return False
        try:
            with conn.transaction():
                _copy(cur, _COPY_DETECTIONS, EVENT_COLUMNS, rows)
                if decided:
                    _copy(cur, _COPY_ASSESSMENTS, QA_COLUMNS, (qa_row(*d) for d in decided))
        except psycopg.errors.UniqueViolation:
            self._staged_left = self.STAGED_AFTER_CONFLICT
            return False
        return True

    @staticmethod
    def _dead_letters(cur: psycopg.Cursor, dead_letters: Sequence[DeadLetter]) -> int:
        if not dead_letters:
            return 0
        cur.executemany(
            _INSERT_DEAD_LETTER,
            [
                (
                    d.source,
                    d.partition,
                    d.offset,
                    d.rejection.item,
                    d.rejection.text,
                    d.rejection.event_id,
                    d.rejection.facility_id,
                    d.rejection.raw,
                )
                for d in dead_letters
            ],
        )
        return max(cur.rowcount, 0)

    def write_isolating(
        self,
        conn: psycopg.Connection,
        events: Sequence[pb.DetectionEvent],
        flags: Sequence[pb.AnomalyFlag] = (),
        dead_letters: Sequence[DeadLetter] = (),
        *,
        source: str,
    ) -> WriteResult:
        """:meth:`write`, but rows the database refuses are dead-lettered, not fatal."""
        return self.write_rows_isolating(conn, BatchRows.of(events, flags), dead_letters, source=source)

    def write_rows_isolating(
        self,
        conn: psycopg.Connection,
        batch: BatchRows,
        dead_letters: Sequence[DeadLetter] = (),
        *,
        source: str,
    ) -> WriteResult:
        """:meth:`write_rows`, but rows the database refuses are dead-lettered, not fatal.

        The validator mirrors every table constraint, so this fallback should never trigger; if
        it does (a constraint added later), the batch is split in halves until each refused
        event or flag stands alone, and that one is dead-lettered with the database's message.
        Everything else is still written exactly once; connection errors propagate.
        """
        try:
            return self.write_rows(conn, batch, dead_letters)
        except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as exc:
            items: list[pb.DetectionEvent | pb.AnomalyFlag] = [*batch.events, *batch.flags]
            if not items:
                raise
            if len(items) == 1:
                return self._refuse(conn, items[0], exc, dead_letters, source)
        half = len(items) // 2
        results = [
            self.write_rows_isolating(
                conn,
                BatchRows.of(
                    [i for i in part if isinstance(i, pb.DetectionEvent)],
                    [i for i in part if isinstance(i, pb.AnomalyFlag)],
                ),
                letters,
                source=source,
            )
            for part, letters in ((items[:half], dead_letters), (items[half:], ()))
        ]
        return results[0] + results[1]

    def _refuse(
        self,
        conn: psycopg.Connection,
        item: pb.DetectionEvent | pb.AnomalyFlag,
        exc: psycopg.Error,
        dead_letters: Sequence[DeadLetter],
        source: str,
    ) -> WriteResult:
        rejection = Rejection(
            Reason.REJECTED_BY_DATABASE,
            f"{exc.sqlstate}: {str(exc).splitlines()[0]}",
            item.SerializeToString(),
            event_id=item.event_id or None,
            facility_id=item.facility_id or None,
        )
        refused = DeadLetter(rejection, source)
        log.error("database refused %s %s: %s", type(item).__name__, item.event_id, rejection.detail)
        result = self.write(conn, (), (), [*dead_letters, refused])
        return WriteResult(dead_letters_written=result.dead_letters_written, rejected=(refused,))
