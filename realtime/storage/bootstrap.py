"""One call that makes a database ready for the platform: exists, migrated, partitioned, seeded."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import psycopg

from realtime.storage.facilities import ensure_cameras, ensure_facilities
from realtime.storage.migrate import upgrade
from realtime.storage.partitions import MaintenanceReport, maintain


@dataclass
class BootstrapReport:
    migrations: list[str]
    maintenance: MaintenanceReport
    facilities_added: int
    cameras_added: int = 0


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
