"""A snapshot of where events are stuck, for a fault that did not heal in time.

It answers the questions a stalled recovery raises, from the outside: is the consumer group
behind the log (and on which partitions), what the database sessions are doing (idle, waiting
on a lock, in a long transaction), what the ingest worker said last, and what it counted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import psycopg
from kafka import KafkaConsumer, TopicPartition


def group_lag(bootstrap: str, group_id: str, topics: Iterable[str]) -> list[dict[str, object]]:
    """Committed offset, log end and lag of every partition of ``topics`` for ``group_id``
    (read through a consumer of the group that never joins it, so nothing is rebalanced)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        group_id=group_id,
        enable_auto_commit=False,
        client_id="wv-soak-diagnostics",
    )
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        ends = consumer.end_offsets(partitions)
        rows = []
        for tp in partitions:
            at = consumer.committed(tp)
            end = ends.get(tp)
            lag = None if at is None or end is None else end - at
            rows.append({"partition": f"{tp.topic}[{tp.partition}]", "committed": at, "end": end, "lag": lag})
        return rows
    finally:
        consumer.close(autocommit=False)


def database_sessions(database_url: str) -> list[dict[str, object]]:
    """The database's client sessions: who, in which state, waiting on what, for how long."""
    with psycopg.connect(database_url, connect_timeout=5, autocommit=True) as conn:
        cursor = conn.execute(
            "SELECT pid, application_name, state, wait_event_type, wait_event, "
            "round(extract(epoch FROM now() - xact_start)::numeric, 1) AS xact_s, "
            "pg_blocking_pids(pid) AS blocked_by, left(query, 90) AS query "
            "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "ORDER BY xact_start NULLS LAST"
        )
        names = [c.name for c in cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def snapshot(
    *,
    bootstrap: str,
    group_id: str,
    topics: Iterable[str],
    database_url: str,
    ingest_log: str,
    ingest_metrics: dict[str, float],
    missing: dict[str, int],
) -> str:
    """A readable report; each part that cannot be read says why instead of hiding the others."""
    parts = [f"missing per facility: {missing}"]
    readers: list[tuple[str, Callable[[], list[dict[str, object]]]]] = [
        ("consumer group", lambda: group_lag(bootstrap, group_id, topics)),
        ("database sessions", lambda: database_sessions(database_url)),
    ]
    for title, read in readers:
        try:
            rows = read()
            parts.append(f"{title}:\n" + "\n".join(f"  {row}" for row in rows))
        except Exception as exc:  # a diagnosis must not fail the run it diagnoses
            parts.append(f"{title}: unavailable ({type(exc).__name__}: {exc})")
    parts.append("ingest metrics:\n" + "\n".join(f"  {k} {v:g}" for k, v in sorted(ingest_metrics.items())))
    parts.append("ingest log (last 40 lines):\n" + "\n".join(ingest_log.splitlines()[-40:]))
    return "\n\n".join(parts)
