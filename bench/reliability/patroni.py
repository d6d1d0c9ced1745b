"""A private Patroni cluster for fault injection: kill its leader, bring it back, switch over.

Wraps :class:`wv.services.patroni.PatroniService` (the same plugin ``wv services up`` starts
with ``WV_SERVICES_HA=postgres``) in a folder of the test's or benchmark's own, so the failover
suite, ``bench.failover`` and the soak exercise exactly what operators run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from wv.services.base import free_port
from wv.services.patroni import MEMBERS, PatroniService


@dataclass(frozen=True)
class Failover:
    """One leader death: who died, when, and when the new leader took its first write."""

    killed: str
    promoted: str
    seconds_to_write: float
    failed_connects: int


class PatroniCluster:
    """One etcd and two Patroni members under ``home``, database ``database``."""

    def __init__(self, home: Path, database: str = "warehouse_vision") -> None:
        self.home = home
        self.service = PatroniService()
        self.database = database
        self.url = ""

    def start(self) -> str:
        """Start (or adopt) the cluster; returns its multi-host URL once a sync standby streams."""
        self.url = self.service.start(self.home, free_port(), f"postgresql:///{self.database}").url
        return self.url

    @property
    def probe_url(self) -> str:
        """The cluster's maintenance database (it exists before any application database does)."""
        return make_conninfo(self.url, dbname="postgres")

    def stop(self, purge: bool = True) -> None:
        """Stop every member and etcd (also after a start that failed half-way); ``purge`` deletes
        their data, including what lives outside ``home`` when its user could not enter it."""
        self.service.stop(self.home, self.service.etcd_pid(self.home) or 0)
        if purge:
            self.service.purge(self.home)

    def leader(self) -> int | None:
        return self.service.leader(self.home)

    def wait_leader(self, timeout: float = 60.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            index = self.leader()
            if index is not None:
                return index
            time.sleep(0.1)
        raise TimeoutError(f"no Patroni leader within {timeout:.0f} s")

    def kill_leader(self, write_timeout: float = 60.0) -> Failover:
        """SIGKILL the leader's Patroni and PostgreSQL; return once a write commits on the new one."""
        victim = self.wait_leader()
        killed_at = time.monotonic()
        self.service.kill_member(self.home, victim)
        failed = 0
        while True:
            try:
                with psycopg.connect(self.probe_url, connect_timeout=1, autocommit=True) as conn:
                    conn.execute("CREATE TABLE IF NOT EXISTS failover_probe (at timestamptz)")
                    conn.execute("INSERT INTO failover_probe VALUES (now())")
                break
            except psycopg.OperationalError:
                failed += 1
                if time.monotonic() - killed_at > write_timeout:
                    raise TimeoutError(
                        f"no write on a new leader {write_timeout:.0f} s after the kill"
                    ) from None
                time.sleep(0.05)
        seconds = time.monotonic() - killed_at
        promoted = self.wait_leader()
        return Failover(MEMBERS[victim], MEMBERS[promoted], seconds, failed)

    def rejoin(self, timeout: float = 90.0) -> float:
        """Restart every killed member (pg_rewind makes it a standby); seconds until it is sync again."""
        started = time.monotonic()
        self.service.heal(self.home)  # what `wv services up` does for a dead member
        self.service.wait_for_sync_standby(self.home, timeout)
        return time.monotonic() - started

    def switchover(self, timeout: float = 60.0) -> float:
        """A planned switchover to the standby; seconds until the new leader is writable with a sync standby."""
        leader = self.wait_leader()
        candidate = 1 - leader
        started = time.monotonic()
        self.service.switchover(self.home, candidate)
        deadline = started + timeout
        while self.leader() != candidate:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{MEMBERS[candidate]} did not take over within {timeout:.0f} s")
            time.sleep(0.1)
        self.service.wait_for_sync_standby(self.home, timeout)
        return time.monotonic() - started

    def roles(self) -> dict[str, str]:
        return {m.name: m.role for m in self.service.members(self.home)}
