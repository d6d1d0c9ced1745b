"""PostgreSQL high availability: time to write again after the leader dies, and what a synchronous
standby costs ingest.

    python -m bench.failover [--quick] [--kills N] [--events N]

1. **Ingest with a synchronous standby vs a single instance**, same run, same binaries and
   settings: ``IngestWorker`` (the code behind ``wv realtime run``) drains the same backlog into a
   private single PostgreSQL and into a private Patroni cluster (leader + synchronous standby,
   ``synchronous_commit = on``: each commit waits for the standby's flush), ``--rounds`` times each,
   interleaved; ratio = median cluster / median single.
2. **Failover series:** a writer commits a row every 20 ms through the multi-host URL
   (``target_session_attrs=read-write``), reconnecting on every error, as the centre's clients do.
   The leader's Patroni and PostgreSQL are SIGKILLed together ``--kills`` times; each time the
   figure is kill → the writer's first commit on the new leader. The killed member then rejoins
   (pg_rewind) before the next kill. At the end every acknowledged row must be in the table
   (``lost``) exactly once.
3. **Switchover:** one planned ``POST /switchover`` under the same writer (the longest pause
   between two acknowledged writes while it ran).

Both servers run under ``.local/bench/failover/`` and are stopped and deleted afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import shutil
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from bench._report import write_report
from bench.ingest import CAMERAS, cpu_seconds, make_events, sustained
from bench.reliability.patroni import PatroniCluster
from realtime.ingest.worker import IngestConfig
from realtime.storage.bootstrap import bootstrap
from wv.services.base import child_pids, free_port
from wv.services.postgres import PostgresService
from wv.settings import PlatformSettings

DATABASE = "wv_bench_failover"


@dataclass
class Writer:
    """Commits one row every ``interval_s`` through ``url`` until stopped; remembers what was acknowledged."""

    url: str
    interval_s: float = 0.02
    acked: list[tuple[float, int]] = field(default_factory=list)  # (monotonic time, id)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS failover_writes (id bigint PRIMARY KEY, at timestamptz)")
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        next_id = 0
        conn: psycopg.Connection | None = None
        while not self._stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.url, autocommit=True, connect_timeout=1)
                conn.execute("INSERT INTO failover_writes VALUES (%s, now())", (next_id,))
                self.acked.append((time.monotonic(), next_id))
                next_id += 1
            except psycopg.Error:
                if conn is not None:
                    conn.close()
                conn = None
                # An unacknowledged insert may have committed: the next id is new either way.
                next_id += 1
            self._stop.wait(self.interval_s)

    def longest_pause(self, start: float, end: float) -> float:
        """The longest time without an acknowledgement between ``start`` and ``end``."""
        times = [start, *(at for at, _ in self.acked if start < at < end), end]
        return max(b - a for a, b in itertools.pairwise(times))

    def first_ack_after(self, moment: float, timeout: float = 60.0) -> float:
        """Seconds from ``moment`` to the first acknowledgement after it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            first = next((at for at, _ in self.acked if at > moment), None)
            if first is not None:
                return first - moment
            time.sleep(0.01)
        raise TimeoutError(f"no write acknowledged within {timeout:.0f} s of the kill")

    def audit(self) -> tuple[int, int]:
        """(lost, duplicated): acknowledged ids missing from the table, ids stored twice."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            stored = [row[0] for row in conn.execute("SELECT id FROM failover_writes").fetchall()]
        acked = {i for _, i in self.acked}
        return len(acked - set(stored)), len(stored) - len(set(stored))


def ingest_rate(settings: PlatformSettings, url: str, events: int, per_message: int) -> float:
    """Events/s one ingest worker drains a backlog at into the database of ``url``."""
    bootstrap(url, facilities=settings.facilities, retention_days=settings.retention_days, cameras=CAMERAS)
    config = IngestConfig.from_settings(settings, database_url=url, redis_url=None, group_id="bench-failover")
    return sustained(settings, config, url, make_events(events), per_message, 1).rate


def cpu_of(pids: list[int]) -> float:
    """CPU seconds the processes that still exist have used."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += cpu_seconds(pid)
    return total


@dataclass(frozen=True)
class IngestComparison:
    single: float
    """events/s, median of the rounds"""
    sync: float
    standby_cpu_us: float
    """the standby's PostgreSQL CPU per event"""

    @property
    def ratio(self) -> float:
        return self.sync / self.single


def _pin(pids: list[int], cores: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(pid, cores)


def compare_ingest(
    settings: PlatformSettings,
    single_url: str,
    cluster: PatroniCluster,
    events: int,
    per_message: int,
    rounds: int,
    *,
    pin: bool,
) -> IngestComparison:
    """Ingest into the single server and the cluster, ``rounds`` times each, interleaved.

    ``pin``: the standby's PostgreSQL gets core 1 to itself and everything else (this process, the
    ingest worker it spawns, the single server, the leader) shares core 0 — the standby on a
    machine of its own, as in production, instead of competing with the leader for two cores.
    """
    everything = set(range(os.cpu_count() or 1))
    leader = cluster.wait_leader()
    standby = cluster.service.postgres_pids(cluster.home, 1 - leader)
    if pin:
        _pin([os.getpid()], {0})
        _pin(cluster.service.postgres_pids(cluster.home, leader), {0})
        _pin(standby, {1})
        _pin(_children_of(single_url), {0})
    singles, syncs, standby_cpu = [], [], 0.0
    try:
        for _ in range(rounds):  # interleaved, so a busy moment of the machine hits both
            singles.append(ingest_rate(settings, single_url, events, per_message))
            before = cpu_of(standby)
            syncs.append(ingest_rate(settings, cluster.url, events, per_message))
            standby_cpu += cpu_of(standby) - before
    finally:
        if pin:
            _pin([os.getpid(), *cluster.service.postgres_pids(cluster.home, leader), *standby], everything)
            _pin(_children_of(single_url), everything)
    return IngestComparison(
        statistics.median(singles), statistics.median(syncs), standby_cpu / (events * rounds) * 1e6
    )


def _children_of(url: str) -> list[int]:
    """The single server's postmaster (its ``pg_postmaster`` pid) and its children."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
    backend = int(row[0]) if row else 0
    postmaster = int(Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()[1]) if backend else 0
    return [postmaster, *child_pids(postmaster)] if postmaster else []


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 kills, 50k events, 1 round (about 2 minutes)")
    parser.add_argument("--kills", type=int, help="leader kills (default 5, quick 2)")
    parser.add_argument("--events", type=int, help="ingest backlog per target (default 200k, quick 50k)")
    parser.add_argument("--per-message", type=int, default=250, help="events per DetectionBatch message")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved ingest runs per target (median)")
    args = parser.parse_args(argv)
    kills = args.kills or (2 if args.quick else 5)
    args.rounds = 1 if args.quick else args.rounds
    events = args.events or (50_000 if args.quick else 200_000)
    settings = PlatformSettings.load()
    home = (settings.state_dir / "bench" / "failover").resolve()
    shutil.rmtree(home, ignore_errors=True)

    single_service, single_home = PostgresService(), home / "single"
    single = single_service.start(single_home, free_port(), f"postgresql:///{DATABASE}")
    cluster = PatroniCluster(home / "cluster", DATABASE)
    try:
        cluster.start()
        shared = compare_ingest(
            settings, single.url, cluster, events, args.per_message, args.rounds, pin=False
        )
        own_core = compare_ingest(
            settings, single.url, cluster, events, args.per_message, args.rounds, pin=True
        )

        writer = Writer(make_conninfo(cluster.url, dbname="postgres"))
        writer.start()
        failovers, rejoins = [], []
        for _ in range(kills):
            time.sleep(1.0)  # some acknowledged writes on the leader that is about to die
            cluster.service.kill_member(cluster.home, cluster.wait_leader())
            killed_at = time.monotonic()  # returns once every process of the member is gone
            failovers.append(writer.first_ack_after(killed_at))
            rejoins.append(cluster.rejoin())
        switched_at = time.monotonic()
        switchover = cluster.switchover()
        time.sleep(1.0)
        switch_write = writer.longest_pause(switched_at, time.monotonic())
        writer.stop()
        lost, duplicated = writer.audit()
    finally:
        cluster.stop()
        single_service.stop(single_home, single.pid)
        shutil.rmtree(home, ignore_errors=True)

    metrics: dict[str, float] = {
        "kills": kills,
        "failover_s_median": round(statistics.median(failovers), 2),
        "failover_s_max": round(max(failovers), 2),
        **{f"failover_s_kill_{i + 1}": round(s, 2) for i, s in enumerate(failovers)},
        "rejoin_s_median": round(statistics.median(rejoins), 2),
        "switchover_s": round(switchover, 2),
        "switchover_write_gap_s": round(switch_write, 2),
        "acknowledged_writes": len(writer.acked),
        "lost": lost,
        "duplicated": duplicated,
        "ingest_sync_standby_events_per_s": round(shared.sync),
        "ratio_sync_to_single": round(shared.ratio, 3),
        "standby_cpu_us_per_event": round(shared.standby_cpu_us, 1),
        "ingest_sync_standby_own_core_events_per_s": round(own_core.sync),
        "ratio_sync_to_single_standby_own_core": round(own_core.ratio, 3),
    }
    baseline = {
        "ingest_single_instance_events_per_s": round(shared.single),
        "ingest_single_instance_one_core_events_per_s": round(own_core.single),
    }
    rows = [
        {
            "measure": "ingest, single PostgreSQL (baseline)",
            "value": f"{shared.single:,.0f} events/s",
            "goal": "",
        },
        {
            "measure": "ingest, leader + synchronous standby, all on the 2 shared cores",
            "value": f"{shared.sync:,.0f} events/s ({shared.ratio:.0%})",
            "goal": "≥ 70 %",
        },
        {
            "measure": "the standby's PostgreSQL CPU per event",
            "value": f"{shared.standby_cpu_us:.1f} µs",
            "goal": "",
        },
        {
            "measure": "ingest, single PostgreSQL on core 0 with the worker (baseline)",
            "value": f"{own_core.single:,.0f} events/s",
            "goal": "",
        },
        {
            "measure": "ingest, leader on core 0 with the worker, standby alone on core 1 (its own machine)",
            "value": f"{own_core.sync:,.0f} events/s ({own_core.ratio:.0%})",
            "goal": "≥ 70 %",
        },
        {
            "measure": f"leader killed → first commit on the new leader ({kills} kills)",
            "value": f"median {statistics.median(failovers):.1f} s, max {max(failovers):.1f} s",
            "goal": "≤ 15 s",
        },
        {
            "measure": "killed member back as synchronous standby",
            "value": f"median {statistics.median(rejoins):.1f} s",
            "goal": "",
        },
        {
            "measure": "planned switchover (until a sync standby again)",
            "value": f"{switchover:.1f} s (writes paused {switch_write:.1f} s)",
            "goal": "",
        },
        {
            "measure": "acknowledged writes lost / duplicated",
            "value": f"{lost} / {duplicated} of {len(writer.acked)}",
            "goal": "0 / 0",
        },
    ]
    write_report("failover", metrics, baseline, rows)


if __name__ == "__main__":
    main()
