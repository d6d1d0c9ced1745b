"""Which facilities exist, asked once per event: a cached view of the ``facilities`` table.

The set is refreshed every ``refresh_s`` and, at most once per ``miss_refresh_s``, on an
unknown id, so a facility added while workers run is accepted within seconds without a
database round trip per event. When the database is unreachable the last known set stays;
before the first successful load the error propagates (callers retry like any database error).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import psycopg

log = logging.getLogger(__name__)


class FacilityCache:
    """``cache(facility_id) -> bool``; thread-safe, refreshes lazily on use."""

    def __init__(
        self,
        load: Callable[[], set[str]],
        *,
        refresh_s: float = 60.0,
        miss_refresh_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._refresh_s = refresh_s
        self._miss_refresh_s = miss_refresh_s
        self._clock = clock
        self._known: set[str] = set()
        self._loaded_at = -float("inf")
        self._lock = threading.Lock()

    @classmethod
    def from_database(
        cls, database_url: str, *, refresh_s: float = 60.0, miss_refresh_s: float = 5.0
    ) -> FacilityCache:
        """A cache loading ids with a short-lived connection to ``database_url``."""

        def load() -> set[str]:
            with psycopg.connect(database_url, connect_timeout=3, autocommit=True) as conn:
                return {row[0] for row in conn.execute("SELECT facility_id FROM facilities")}

        return cls(load, refresh_s=refresh_s, miss_refresh_s=miss_refresh_s)

    def _refresh(self) -> None:
        try:
            known = self._load()
        except psycopg.Error as exc:
            if self._loaded_at == -float("inf"):
                raise  # never loaded: answering "unknown" would dead-letter good events
            log.warning("facility list not refreshed, keeping %d known ids: %s", len(self._known), exc)
            known = self._known
        with self._lock:
            self._known = known
            self._loaded_at = self._clock()

    def prime(self) -> None:
        """Load now; raises the database error if no list was ever loaded (callers retry)."""
        self._refresh()

    def __call__(self, facility_id: str) -> bool:
        age = self._clock() - self._loaded_at
        if age > self._refresh_s or (facility_id not in self._known and age > self._miss_refresh_s):
            self._refresh()
        return facility_id in self._known
