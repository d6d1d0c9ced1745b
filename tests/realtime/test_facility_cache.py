"""The facility and camera registry the validator asks per event, on the real ``facilities`` and
``cameras`` tables: registrations show up after at most the miss-refresh window, without a
database round trip per event."""

from __future__ import annotations

from realtime.facility_cache import FacilityCache
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
