"""Which facilities and cameras exist, asked once per event: a cached view of the ``facilities``
and ``cameras`` tables.

The registry (facility → its registered camera ids) is loaded every ``refresh_s``, and again on
an unknown facility when the last load is older than ``miss_refresh_s``. A camera of a known
facility missing from the last load is looked up on its own (one primary-key probe, remembered
as absent for ``miss_refresh_s``, at most ``max_lookups_per_s`` a second): an edge that follows
the camera registry starts a camera moments after it is registered, and its first events must
not be dead-lettered as ``unknown_camera`` because the cache was loaded a second before. Neither
costs a database round trip per event. When the database is unreachable the last known registry
stays; before the first successful load the error propagates (callers retry like any database
error).
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
        lookup: Callable[[str, str], bool],
        *,
        refresh_s: float = 60.0,
        miss_refresh_s: float = 5.0,
        max_lookups_per_s: int = 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._lookup = lookup
        self._refresh_s = refresh_s
        self._miss_refresh_s = miss_refresh_s
        self._max_lookups = max_lookups_per_s
        self._clock = clock
        self._known: Registry = {}
        self._loaded_at = -float("inf")
        self._absent: dict[tuple[str, str], float] = {}
        """Cameras looked up and not found, with when (trusted for miss_refresh_s)."""
        self._lookups: tuple[int, int] = (0, 0)
        """(second, lookups in it): the rate limit of single-camera lookups."""
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

        def lookup(facility_id: str, camera_id: str) -> bool:
            with psycopg.connect(database_url, connect_timeout=3, autocommit=True) as conn:
                row = conn.execute(
                    "SELECT 1 FROM cameras WHERE facility_id = %s AND camera_id = %s",
                    (facility_id, camera_id),
                ).fetchone()
                return row is not None

        return cls(load, lookup, refresh_s=refresh_s, miss_refresh_s=miss_refresh_s, clock=clock)

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
            self._absent.clear()

    def prime(self) -> None:
        """Load now; raises the database error if nothing was ever loaded (callers retry)."""
        self._refresh()

    def _cameras(self, facility_id: str, camera_id: str | None = None) -> frozenset[str] | None:
        """The cameras of ``facility_id`` (None: unknown facility): reloaded first when stale or when
        the facility is missing and the last load is not recent; ``camera_id`` of a known facility
        missing from them is looked up on its own."""
        age = self._clock() - self._loaded_at
        cameras = self._known.get(facility_id)
        if age > self._refresh_s or (cameras is None and age > self._miss_refresh_s):
            self._refresh()
            cameras = self._known.get(facility_id)
        elif (
            cameras is not None
            and camera_id is not None
            and camera_id not in cameras
            and self._looked_up(facility_id, camera_id)
        ):
            cameras = self._known.get(facility_id)
        return cameras

    def _looked_up(self, facility_id: str, camera_id: str) -> bool:
        """Look one camera up (unless found absent lately or over the rate); True if it exists
        now (it is then added to the known registry)."""
        now = self._clock()
        second = int(now)
        with self._lock:
            absent_since = self._absent.get((facility_id, camera_id))
            if absent_since is not None and now - absent_since <= self._miss_refresh_s:
                return False
            count = self._lookups[1] + 1 if self._lookups[0] == second else 1
            if count > self._max_lookups:
                return False
            self._lookups = (second, count)
        try:
            found = self._lookup(facility_id, camera_id)
        except psycopg.Error as exc:
            log.warning("camera %s of %s not looked up: %s", camera_id, facility_id, exc)
            return False
        with self._lock:
            if not found:
                self._absent[(facility_id, camera_id)] = now
                return False
            self._known = {
                **self._known,
                facility_id: self._known.get(facility_id, frozenset()) | {camera_id},
            }
        return True

    def __call__(self, facility_id: str) -> bool:
        return self._cameras(facility_id) is not None

    def camera(self, facility_id: str, camera_id: str) -> bool:
        """Whether ``camera_id`` is registered for ``facility_id`` (False for an unknown facility)."""
        cameras = self._cameras(facility_id, camera_id)
        return cameras is not None and camera_id in cameras
