"""Which facilities and cameras exist, asked once per event: a cached view of the ``facilities``
and ``cameras`` tables.

The registry (facility → its registered camera ids) is refreshed every ``refresh_s`` and, at
most once per ``miss_refresh_s``, on an unknown facility or camera, so one added while workers
run is accepted within seconds without a database round trip per event. When the database is
unreachable the last known registry stays; before the first successful load the error
propagates (callers retry like any database error).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

import psycopg

log = logging.getLogger(__name__)

Registry = Mapping[str, frozenset[str]]
"""facility_id → the camera ids registered for it (empty when it has none)."""


def load_registry(conn: psycopg.Connection) -> dict[str, frozenset[str]]:
    """Every facility with its registered cameras, read through ``conn``."""
    cameras: dict[str, set[str]] = {}
    rows = conn.execute(
        "SELECT f.facility_id, c.camera_id FROM facilities f LEFT JOIN cameras c USING (facility_id)"
    )
    for facility_id, camera_id in rows:
        known = cameras.setdefault(facility_id, set())
        if camera_id is not None:
            known.add(camera_id)
    return {facility: frozenset(ids) for facility, ids in cameras.items()}


class FacilityCache:
    """``cache(facility_id) -> bool`` and ``cache.camera(facility_id, camera_id) -> bool``;
    thread-safe, refreshes lazily on use."""

    def __init__(
        self,
        load: Callable[[], Registry],
        *,
        refresh_s: float = 60.0,
        miss_refresh_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._refresh_s = refresh_s
        self._miss_refresh_s = miss_refresh_s
        self._clock = clock
        self._known: Registry = {}
        self._loaded_at = -float("inf")
        self._lock = threading.Lock()

    @classmethod
    def from_database(
        cls,
        database_url: str,
        *,
        refresh_s: float = 60.0,
        miss_refresh_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> FacilityCache:
        """A cache loading the registry with a short-lived connection to ``database_url``."""

        def load() -> Registry:
            with psycopg.connect(database_url, connect_timeout=3, autocommit=True) as conn:
                return load_registry(conn)

        return cls(load, refresh_s=refresh_s, miss_refresh_s=miss_refresh_s, clock=clock)

    def _refresh(self) -> None:
        try:
            known = self._load()
        except psycopg.Error as exc:
            if self._loaded_at == -float("inf"):
                raise  # never loaded: answering "unknown" would dead-letter good events
            log.warning(
                "facility and camera registry not refreshed, keeping %d known facilities: %s",
                len(self._known),
                exc,
            )
            known = self._known
        with self._lock:
            self._known = known
            self._loaded_at = self._clock()

    def prime(self) -> None:
        """Load now; raises the database error if nothing was ever loaded (callers retry)."""
        self._refresh()

    def _cameras(self, facility_id: str, camera_id: str | None = None) -> frozenset[str] | None:
        """The cameras of ``facility_id`` (None: unknown facility), refreshed first when stale or
        when the facility (or ``camera_id`` of it) is missing and the last load is not recent."""
        age = self._clock() - self._loaded_at
        cameras = self._known.get(facility_id)
        missing = cameras is None or (camera_id is not None and camera_id not in cameras)
        if age > self._refresh_s or (missing and age > self._miss_refresh_s):
            self._refresh()
            cameras = self._known.get(facility_id)
        return cameras

    def __call__(self, facility_id: str) -> bool:
        return self._cameras(facility_id) is not None

    def camera(self, facility_id: str, camera_id: str) -> bool:
        """Whether ``camera_id`` is registered for ``facility_id`` (False for an unknown facility)."""
        cameras = self._cameras(facility_id, camera_id)
        return cameras is not None and camera_id in cameras
