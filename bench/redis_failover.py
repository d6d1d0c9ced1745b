"""Redis master failover time with Sentinel (issue 18): SIGKILL → first write on the new master.

    python -m bench.redis_failover [--kills 5]

Starts the local HA layout ``wv services`` uses (``wv.services.redis_sentinel``: master, replica,
three sentinels, ``down-after-milliseconds`` 2000) in a scratch folder. Each round: a writer
thread XADDs through the same client the centre uses (``foundation.redis_connect.connect`` with a
``redis+sentinel://`` URL, ``failover_s`` 10) about every 10 ms; the master's redis-server is
SIGKILLed; a poller without retries (a fresh sentinel lookup each attempt, every 20 ms) measures
the time from the kill to the first write acknowledged by the promoted replica. The writer, and
a reader looping on ``XREAD BLOCK 200`` (a command in flight at the kill, like the window
aggregator's), report what a real client sees: the longest wait between two answered calls and
any error that reached them. Then the killed server is restarted as a replica and the round repeats once
it is synced and every sentinel counts it (the next kill must be able to fail over).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import threading
import time
from pathlib import Path

import redis

from bench._report import write_report
from bench.reliability.faults import SentinelRedis
from foundation.redis_connect import connect

STREAM = "wv:bench:failover"


class Writer(threading.Thread):
    """XADDs (or, as ``reader``, blocking XREADs: a command nearly always in flight at the kill,
    like the window aggregator's) through the factory client until stopped; keeps success times
    and errors."""

    def __init__(self, url: str, *, reader: bool = False) -> None:
        super().__init__(daemon=True)
        self.client = connect(url, socket_timeout=1, socket_connect_timeout=1, failover_s=10)
        self.reader = reader
        self.stop = threading.Event()
        self.acknowledged: list[float] = []
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                if self.reader:
                    self.client.xread({STREAM: "$"}, count=1, block=200)
                else:
                    self.client.xadd(STREAM, {"at": repr(time.time())}, maxlen=10_000, approximate=True)
                self.acknowledged.append(time.monotonic())
            except redis.RedisError as exc:
                self.errors.append(f"{time.monotonic():.2f} {type(exc).__name__}: {exc}")
            if not self.reader:
                self.stop.wait(0.01)

    def longest_wait(self, after: float) -> float:
        """The longest gap between two acknowledged writes around ``after`` (the kill)."""
        times = [t for t in self.acknowledged if t >= after - 1.0]
        return max((b - a for a, b in itertools.pairwise(times)), default=float("nan"))


def _first_write(server: SentinelRedis, old: tuple[str, int], killed_at: float, timeout: float = 60) -> float:
    """Seconds from the kill to the first write acknowledged by another master than ``old``."""
    while time.monotonic() - killed_at < timeout:
        client = connect(server.url, socket_timeout=0.5, socket_connect_timeout=0.5, failover_s=0)
        try:
            address = client.connection_pool.get_master_address()  # type: ignore[attr-defined]
            if tuple(address) != old:
                client.xadd(STREAM, {"probe": "1"})
                return time.monotonic() - killed_at
        except (redis.RedisError, OSError):
            pass
        finally:
            client.close()
        time.sleep(0.02)
    raise TimeoutError(f"no write on a new master within {timeout:.0f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=5, help="Master kills (at least 5 for the figures).")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="wv-redis-failover-") as scratch:
        server = SentinelRedis(Path(scratch) / "redis-ha")
        started = time.monotonic()
        server.start()
        start_s = time.monotonic() - started
        rows, failover, blocked, read_blocked, errors, read_errors = [], [], [], [], 0, 0
        try:
            for kill in range(1, args.kills + 1):
                writer, reader = Writer(server.url), Writer(server.url, reader=True)
                writer.start()
                reader.start()
                time.sleep(0.5)  # steady writes before the kill
                old = server.kill_master()
                killed_at = time.monotonic()
                seconds = _first_write(server, old, killed_at)
                new = server.wait_promoted(old)
                time.sleep(1.0)  # the writer goes on through the new master
                for thread in (writer, reader):
                    thread.stop.set()
                    thread.join(30)
                    thread.client.close()
                failover.append(seconds)
                blocked.append(writer.longest_wait(killed_at))
                read_blocked.append(reader.longest_wait(killed_at))
                errors += len(writer.errors)
                read_errors += len(reader.errors)
                for error in writer.errors + reader.errors:
                    print(f"kill {kill} (at {killed_at:.2f}): a client saw {error}")
                rows.append(
                    {
                        "kill": kill,
                        "old master": f"{old[0]}:{old[1]}",
                        "new master": f"{new[0]}:{new[1]}",
                        "kill → first write on the new master s": f"{seconds:.2f}",
                        "writer's longest wait s": f"{blocked[-1]:.2f}",
                        "errors reaching the writer": len(writer.errors),
                        "blocking reader's longest wait s": f"{read_blocked[-1]:.2f}",
                        "errors reaching the reader": len(reader.errors),
                    }
                )
                server.restore()
        finally:
            server.stop()
    summary = {
        "kill": "median / max",
        "old master": "",
        "new master": "",
        "kill → first write on the new master s": f"{statistics.median(failover):.2f} / {max(failover):.2f}",
        "writer's longest wait s": f"{statistics.median(blocked):.2f} / {max(blocked):.2f}",
        "errors reaching the writer": errors,
        "blocking reader's longest wait s": f"{statistics.median(read_blocked):.2f} / {max(read_blocked):.2f}",
        "errors reaching the reader": read_errors,
    }
    print(f"HA layout started in {start_s:.1f} s (replica synced, sentinels discovered)")
    path = write_report(
        "redis_failover",
        {
            "failover_s_median": statistics.median(failover),
            "failover_s_max": max(failover),
            "writer_wait_s_median": statistics.median(blocked),
            "writer_wait_s_max": max(blocked),
            "writer_errors": errors,
            "reader_wait_s_median": statistics.median(read_blocked),
            "reader_wait_s_max": max(read_blocked),
            "reader_errors": read_errors,
            "kills": len(failover),
            "start_s": start_s,
        },
        {"goal_failover_s": 15.0},
        [*rows, summary],
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
