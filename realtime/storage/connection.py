"""Database connections for the write and query paths: opened lazily, dropped when broken.

A connection that failed (terminated backend, restarted server) is discarded and the next use
reconnects, so recovering from an outage needs nothing but a retry. Each new connection gets
the writer's staging tables and a statement timeout.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from realtime.storage.writer import prepare

_KEEPALIVE = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}


class Connector:
    """One connection, (re)opened on demand; not thread-safe (one user at a time)."""

    def __init__(
        self,
        database_url: str,
        *,
        connect_timeout_s: int = 5,
        statement_timeout_ms: int = 60_000,
        application_name: str = "wv-realtime",
    ) -> None:
        self._url = database_url
        self._options: dict[str, Any] = {
            "connect_timeout": connect_timeout_s,
            "application_name": application_name,
            "options": f"-c statement_timeout={statement_timeout_ms}",
            **_KEEPALIVE,
        }
        self._conn: psycopg.Connection | None = None

    def get(self) -> psycopg.Connection:
        """The live connection, opening (and preparing) a new one if needed."""
        if self._conn is not None and self._conn.closed:
            self._conn = None
        if self._conn is None:
            conn = psycopg.connect(self._url, autocommit=True, **self._options)
            try:
                prepare(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def discard(self) -> None:
        """Close the connection; the next :meth:`get` reconnects."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """Yield the connection; discard it when a connection-level error escapes."""
        try:
            yield self.get()
        except (psycopg.OperationalError, psycopg.InterfaceError):
            self.discard()
            raise

    def close(self) -> None:
        self.discard()


class ConnectorPool:
    """A fixed set of :class:`Connector` s for concurrent callers (gRPC handler threads)."""

    def __init__(self, database_url: str, size: int, **options: object) -> None:
        self._free: queue.SimpleQueue[Connector] = queue.SimpleQueue()
        self._all = [Connector(database_url, **options) for _ in range(size)]  # type: ignore[arg-type]
        for connector in self._all:
            self._free.put(connector)

    @contextmanager
    def connection(self, timeout_s: float | None = None) -> Iterator[psycopg.Connection]:
        """Borrow a connection (waiting up to ``timeout_s`` for a free one)."""
        try:
            connector = self._free.get(timeout=timeout_s)
        except queue.Empty:
            raise psycopg.OperationalError("no free database connection in time") from None
        try:
            with connector.connection() as conn:
                yield conn
        finally:
            self._free.put(connector)

    def close(self) -> None:
        for connector in self._all:
            connector.close()
