"""Facility-day event sets written through the real ingest path (``EventFactory`` + ``EventWriter``)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest

from bench.fixtures.events import EventFactory
from contract.events import anomaly_flag
from contract.proto import warehouse_vision_pb2 as pb
from realtime.storage.writer import EventWriter, prepare

DAMAGES = ("crushed", "torn", "wet", "open")


@dataclass
class Written:
    """What a scenario put in the database, for independent recomputation."""

    events: list[pb.DetectionEvent] = field(default_factory=list)
    flags: list[pb.AnomalyFlag] = field(default_factory=list)

    def __iadd__(self, other: Written) -> Written:
        self.events += other.events
        self.flags += other.flags
        return self


class Seeder:
    """Writes realistic facility-days, with edge cases, through the production writer."""

    def __init__(self, conn: psycopg.Connection) -> None:
        prepare(conn)
        self.conn = conn
        self.writer = EventWriter()
        self._seeds = itertools.count(1)

    def facility_day(self, facility: str, day: date, timezone: str, packages: int = 40) -> Written:
        """``packages`` packages decided across the local day, plus decisions just outside it.

        Every 6th package is damaged, every 5th decision comes from the fallback model, every 9th
        package is in the wrong zone, every 10th is decided twice (two cameras), and a decision
        sits exactly on each window edge (the start is inside, the end is not).
        """
        zone = ZoneInfo(timezone)
        start = datetime.combine(day, time(), zone)
        end = datetime.combine(day + timedelta(days=1), time(), zone)
        factory = EventFactory(facility, seed=next(self._seeds), zones=("inbound", "sorter", "outbound"))
        step = (end - start) / (packages + 1)
        written = Written()
        for i in range(packages):
            fields: dict[str, object] = {"event_time": start + step * (i + 1), "fallback": i % 5 == 0}
            if i % 6 == 0:
                fields["condition"] = DAMAGES[(i // 6) % len(DAMAGES)]
            if i % 9 == 0:
                fields |= {"zone": "sorter", "expected_zone": "outbound"}
            events = factory.package(1, **fields)
            written.events += events
            if i % 10 == 0:
                again = factory.decision(event_time=start + step * (i + 1) + timedelta(seconds=1))
                again.package_id = events[-1].package_id
                written.events.append(again)
        for moment in (start, end, start - timedelta(microseconds=1)):
            written.events.append(factory.decision(event_time=moment, condition="torn"))
        for kind, severity, at in (
            ("damaged", "warning", start + timedelta(hours=1)),
            ("damaged", "critical", start + timedelta(hours=2)),
            ("misplaced", "warning", start + timedelta(hours=3)),
            ("dwell", "info", end - timedelta(seconds=1)),
            ("dwell", "info", end),
        ):
            written.flags.append(
                anomaly_flag(kind=kind, facility_id=facility, flagged_at=at, severity=severity)
            )
        self.write(written)
        return written

    def write(self, written: Written) -> None:
        self.writer.write(self.conn, written.events, written.flags)


@pytest.fixture
def seeder(db: psycopg.Connection) -> Seeder:
    return Seeder(db)


@pytest.fixture
def set_facility(db: psycopg.Connection) -> Callable[..., None]:
    """``set_facility(id, timezone, expected, zones={"inbound": 10})``: reference rows of a facility."""

    def apply(facility: str, timezone: str, expected: int = 0, zones: dict[str, int] | None = None) -> None:
        db.execute(
            "UPDATE facilities SET timezone = %s, expected_daily_packages = %s WHERE facility_id = %s",
            (timezone, expected, facility),
        )
        for zone_id, n in (zones or {}).items():
            db.execute(
                "INSERT INTO zones (facility_id, zone_id, expected_daily_packages) VALUES (%s, %s, %s) "
                "ON CONFLICT (facility_id, zone_id) DO UPDATE SET expected_daily_packages = excluded.expected_daily_packages",
                (facility, zone_id, n),
            )

    return apply
