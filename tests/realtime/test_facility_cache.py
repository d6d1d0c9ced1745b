"""The facility and camera registry the validator asks per event, on the real ``facilities`` and
``cameras`` tables: registrations show up after at most the miss-refresh window, without a
database round trip per event; a camera missing from the last load is looked up on its own, so
one registered a moment after a load is accepted at its first event."""

from __future__ import annotations

from realtime.facility_cache import FacilityCache, load_registry
from realtime.storage.facilities import ensure_cameras, register_camera


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_camera_registered_later_is_known_after_the_miss_window_and_not_before(db, database_url):
    clock = Clock()
    cache = FacilityCache.from_database(database_url, refresh_s=60.0, miss_refresh_s=5.0, clock=clock)
    cache.prime()
    assert cache("FAC-001") and cache.camera("FAC-001", "cam-01") and cache.camera("FAC-002", "cam-02")
    assert not cache.camera("FAC-001", "cam-new")
    assert not cache("FAC-404") and not cache.camera("FAC-404", "cam-01")

    assert register_camera(db, "FAC-001", "cam-new", source_uri="rtsp://10.0.0.7/stream1")
    clock.now += 4.0  # within the miss window: the last load is trusted
    assert not cache.camera("FAC-001", "cam-new")
    clock.now += 1.5
    assert cache.camera("FAC-001", "cam-new")
    assert not cache.camera("FAC-002", "cam-new")  # registered for FAC-001 only


def test_a_facility_without_cameras_is_known_but_none_of_its_cameras_is(db, database_url):
    db.execute("DELETE FROM cameras WHERE facility_id = 'FAC-003'")
    clock = Clock()
    cache = FacilityCache.from_database(database_url, clock=clock)
    assert cache("FAC-003") and not cache.camera("FAC-003", "cam-01")
    ensure_cameras(db, {"FAC-003": ["cam-01"]})
    clock.now += 6.0  # past the miss window: the miss reloads
    assert cache.camera("FAC-003", "cam-01")


def test_a_camera_registered_right_after_a_load_is_known_at_its_first_event_and_a_flood_is_rate_limited(
    db, database_url
):
    clock = Clock()
    lookups: list[tuple[str, str]] = []

    def lookup(facility_id: str, camera_id: str) -> bool:
        lookups.append((facility_id, camera_id))
        row = db.execute(
            "SELECT 1 FROM cameras WHERE facility_id = %s AND camera_id = %s", (facility_id, camera_id)
        ).fetchone()
        return row is not None

    cache = FacilityCache(lambda: load_registry(db), lookup, max_lookups_per_s=5, clock=clock)
    cache.prime()
    assert register_camera(db, "FAC-001", "cam-just-added")
    clock.now += 1.0  # well inside the miss window: a reload would wait another 4 s
    assert cache.camera("FAC-001", "cam-just-added") and lookups == [("FAC-001", "cam-just-added")]
    assert cache.camera("FAC-001", "cam-just-added") and len(lookups) == 1  # known from now on

    assert not any(cache.camera("FAC-001", f"forged-{i}") for i in range(50))
    assert len(lookups) == 5  # at most max_lookups_per_s probes in a second
    clock.now += 1.0
    assert not cache.camera("FAC-001", "forged-0") and len(lookups) == 5  # found absent: trusted a while
    assert not cache.camera("FAC-001", "forged-9") and len(lookups) == 6  # a new second, a new probe
