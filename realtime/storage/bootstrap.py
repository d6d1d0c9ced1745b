"""One call that makes a database ready for the platform: exists, migrated, partitioned, seeded;
and one that does it for every facility shard, mirroring the home shard's catalogue."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import psycopg

from realtime.storage.facilities import ensure_cameras, ensure_facilities, mirror_catalogue
from realtime.storage.migrate import upgrade
from realtime.storage.partitions import MaintenanceReport, maintain
from realtime.storage.shards import ShardMap


@dataclass
class BootstrapReport:
    migrations: list[str]
    maintenance: MaintenanceReport
    facilities_added: int
    cameras_added: int = 0
    catalogue_mirrored: int = 0
    """Registry rows this shard's mirror of the home catalogue changed (0 on the home shard)."""


def bootstrap(
    database_url: str,
    *,
    facilities: Sequence[str],
    retention_days: int,
    days_ahead: int = 7,
    timezone: str = "UTC",
    cameras: Mapping[str, Iterable[str]] | None = None,
) -> BootstrapReport:
    """Apply pending migrations, run one partition-maintenance pass and insert the missing
    facilities and ``cameras`` (``{facility_id: [camera_id, ...]}``; their facilities must be
    among ``facilities`` or already exist)."""
    applied = upgrade(database_url)
    with psycopg.connect(database_url, autocommit=True, connect_timeout=10) as conn:
        report = maintain(conn, retention_days=retention_days, days_ahead=days_ahead)
        added = ensure_facilities(conn, facilities, timezone)
        cameras_added = ensure_cameras(conn, cameras or {})
    return BootstrapReport(applied, report, added, cameras_added)


def bootstrap_shards(
    shards: ShardMap,
    *,
    facilities: Sequence[str],
    retention_days: int,
    days_ahead: int = 7,
    timezone: str = "UTC",
    cameras: Mapping[str, Iterable[str]] | None = None,
) -> dict[str, BootstrapReport]:
    """:func:`bootstrap` the home shard, then migrate and maintain every other shard and mirror
    the home catalogue onto it (see :mod:`realtime.storage.shards`); reports by shard name.

    Stops at the first shard that fails: running it again after the cause is fixed is safe."""
    reports = {
        shards.names[0]: bootstrap(
            shards.home_url,
            facilities=facilities,
            retention_days=retention_days,
            days_ahead=days_ahead,
            timezone=timezone,
            cameras=cameras,
        )
    }
    with psycopg.connect(shards.home_url, autocommit=True, connect_timeout=10) as home:
        for name in shards.names[1:]:
            url = shards.urls[name]
            applied = upgrade(url)
            with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
                report = maintain(conn, retention_days=retention_days, days_ahead=days_ahead)
                mirrored = mirror_catalogue(home, conn)
            reports[name] = BootstrapReport(applied, report, 0, 0, mirrored)
    return reports
