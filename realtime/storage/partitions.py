"""Daily range partitions of the time-series tables on plain PostgreSQL.

``maintain`` keeps one partition per UTC day from the retention cut-off to ``days_ahead`` days in
the future and drops partitions wholly past retention. Rows that arrived before their day's
partition existed sit in the table's DEFAULT partition; creating that day's partition moves
them in the same transaction (PostgreSQL refuses the partition otherwise). On TimescaleDB the
tables are hypertables and chunk creation, compression and retention are the extension's
policies, so ``maintain`` only aligns the retention policy with the configured window.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import psycopg
from psycopg import sql

# table -> its partition (time) column
TIME_SERIES: dict[str, str] = {
    "package_detections": "event_time",
    "quality_assessments": "event_time",
    "anomaly_flags": "flagged_at",
}
_LOCK_KEY = 0x57565F5041525453  # "WV_PARTS"
_DAILY = re.compile(r"^(?P<table>[a-z_]+)_p(?P<day>\d{8})$")


@dataclass
class MaintenanceReport:
    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    rows_moved: int = 0
    rows_purged: int = 0
    timescale: bool = False

    def summary(self) -> str:
        if self.timescale:
            return "TimescaleDB: chunks, compression and retention are handled by its policies"
        return (
            f"created {len(self.created)} partitions, dropped {len(self.dropped)}, "
            f"moved {self.rows_moved} rows out of default partitions, purged {self.rows_purged} expired rows"
        )


def partition_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def is_partitioned(conn: psycopg.Connection, table: str) -> bool:
    row = conn.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", (table,)).fetchone()
    if row is None:
        raise LookupError(f"table {table} does not exist; run `wv db upgrade` first")
    return bool(row[0] == "p")


def existing_partitions(conn: psycopg.Connection, table: str) -> dict[date, str]:
    """The daily partitions of ``table`` (by the day in their name); other partitions are ignored."""
    rows = conn.execute(
        """
        SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = to_regclass(%s)
        """,
        (table,),
    ).fetchall()
    days = {}
    for (name,) in rows:
        match = _DAILY.match(name)
        if match and match["table"] == table:
            days[datetime.strptime(match["day"], "%Y%m%d").date()] = name
    return days


def _create_partition(conn: psycopg.Connection, table: str, column: str, day: date) -> int:
    """Create ``table``'s partition for ``day``, moving its rows out of the default partition."""
    lower, upper = _day_start(day), _day_start(day + timedelta(days=1))
    parent, default = sql.Identifier(table), sql.Identifier(f"{table}_default")
    col, part = sql.Identifier(column), sql.Identifier(partition_name(table, day))
    create = sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})").format(
        part, parent, sql.Literal(lower), sql.Literal(upper)
    )
    with conn.transaction():
        has_default = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{table}_default",)).fetchone()
        waiting = None
        if has_default and has_default[0]:
            waiting = conn.execute(
                sql.SQL("SELECT 1 FROM {} WHERE {} >= %s AND {} < %s LIMIT 1").format(default, col, col),
                (lower, upper),
            ).fetchone()
        if not waiting:
            conn.execute(create)
            return 0
        # Writers must not add rows for this day to the default partition while they move.
        conn.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(parent))
        conn.execute(sql.SQL("CREATE TEMP TABLE wv_moving (LIKE {}) ON COMMIT DROP").format(parent))
        moved = conn.execute(
            sql.SQL(
                "WITH moved AS (DELETE FROM {} WHERE {} >= %s AND {} < %s RETURNING *) "
                "INSERT INTO wv_moving SELECT * FROM moved"
            ).format(default, col, col),
            (lower, upper),
        ).rowcount
        conn.execute(create)
        conn.execute(sql.SQL("INSERT INTO {} SELECT * FROM wv_moving").format(parent))
        return moved


def timescale_retention_sql(retention_days: int) -> str:
    """Statements replacing each hypertable's retention policy with one for ``retention_days``."""
    return "".join(
        f"SELECT remove_retention_policy('{table}', if_exists => true);\n"
        f"SELECT add_retention_policy('{table}', INTERVAL '{int(retention_days)} days');\n"
        for table in TIME_SERIES
    )


def maintain(
    conn: psycopg.Connection,
    *,
    retention_days: int,
    days_ahead: int = 7,
    today: date | None = None,
) -> MaintenanceReport:
    """Create missing daily partitions in the window and drop expired ones. Idempotent.

    ``conn`` must be in autocommit mode: each partition is its own short transaction so a
    long pass never holds locks that block ingest for more than one partition's work.
    """
    if retention_days < 1 or days_ahead < 0:
        raise ValueError("retention_days must be >= 1 and days_ahead >= 0")
    report = MaintenanceReport()
    if not is_partitioned(conn, "package_detections"):
        with conn.transaction():
            conn.execute(timescale_retention_sql(retention_days).encode())
        report.timescale = True
        return report
    today = today or datetime.now(UTC).date()
    first = today - timedelta(days=retention_days)
    window = [first + timedelta(days=n) for n in range((today - first).days + days_ahead + 1)]
    conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))  # one pass at a time per database
    try:
        _maintain_partitions(conn, report, window, first)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return report


def _maintain_partitions(
    conn: psycopg.Connection, report: MaintenanceReport, window: list[date], first: date
) -> None:
    for table, column in TIME_SERIES.items():
        existing = existing_partitions(conn, table)
        for day in window:
            if day not in existing:
                report.rows_moved += _create_partition(conn, table, column, day)
                report.created.append(partition_name(table, day))
        for day, name in sorted(existing.items()):
            if day < first:
                with conn.transaction():
                    conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
                report.dropped.append(name)
        if conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{table}_default",)).fetchone() == (True,):
            with conn.transaction():
                report.rows_purged += conn.execute(
                    sql.SQL("DELETE FROM {} WHERE {} < %s").format(
                        sql.Identifier(f"{table}_default"), sql.Identifier(column)
                    ),
                    (_day_start(first),),
                ).rowcount
