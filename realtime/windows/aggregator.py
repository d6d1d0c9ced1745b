"""The window aggregator (``wv realtime windows``): a consumer group over every facility stream.

Each entry is applied by one Lua script that updates its window and ``XACK`` s it atomically,
and counts it only if its event id (or anomaly id) is new to the window, so a re-delivered or
re-claimed entry, the same entry published again (ingest re-storing a batch whose offsets it had
not committed, an edge's replay) or one a rebuild already counted never counts twice. That is
idempotency for replays of the same entry only: each flag reaches the streams from one place
(ingest, inside its event, for an edge flag; the rules runner, once stored, for a rule flag). A consumer that dies leaves its read-but-unacked entries
pending; every aggregator periodically takes over entries idle longer than ``min_idle_ms``
with ``XAUTOCLAIM`` and applies them. Several aggregators may run side by side.

**Windows lost with Redis data are rebuilt from the database on their own** (given a
:class:`~realtime.windows.recompute.WindowRepair`). Two rules, both idempotent because a rebuilt
window keeps the same per-id records the script checks:

1. *Lineage.* The windows are valid for one Redis data history, named by the master's
   replication id (``master_replid`` in ``INFO replication``). The aggregator keeps the id the
   windows were built under in ``wv:windows:lineage``. When the key is missing (Redis restarted
   without persistence, flushed, or a fresh server) or names another id (a replica was promoted
   — it takes a new replication id — after a failover; a restart), writes the old master had not
   yet passed to its replica may be gone: windows *and* stream entries. The aggregator then
   rebuilds the last ``rebuild_minutes`` of every facility's windows from the database before
   it applies anything else, and records the current id. It checks at start, after every Redis
   error it recovers from, and every ``lineage_every_s``.
2. *Gaps.* Entries that ingest could not publish while Redis was unreachable are announced by a
   ``gap`` entry (see :mod:`realtime.windows.streams`); the aggregator rebuilds that facility's
   minutes from the database, then acknowledges the gap entry (left pending, and retried, when
   the database is down).

A rebuild reads the database after the lost writes were committed (ingest commits before it
publishes), so nothing committed is missed; entries still arriving for rebuilt minutes are
recognised as counted. A restart of a Redis with persistence changes the replication id too and
costs one needless (harmless) rebuild.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
import redis

from realtime import metrics
from realtime.windows.model import NO_LATENCY, minute_of, window_keys
from realtime.windows.recompute import WindowRepair
from realtime.windows.streams import STREAM_PREFIX

log = logging.getLogger(__name__)

DEFAULT_GROUP = "wv-windows"
LINEAGE_KEY = "wv:windows:lineage"
"""The replication id of the Redis data history the windows were built in (see the module docstring)."""

_APPLY = """
local applied = 0
if ARGV[1] == 'decision' then
  if redis.call('ZADD', KEYS[2], 'NX', ARGV[6], ARGV[5]) == 1 then
    local counted = {{'packages', '1'}, {'damaged', ARGV[7]}, {'misplaced', ARGV[8]}, {'fallback', ARGV[9]}}
    for _, c in ipairs(counted) do
      if c[2] == '1' then
        redis.call('HINCRBY', KEYS[1], c[1], 1)
        redis.call('HINCRBY', KEYS[1], 'zone:' .. c[1] .. ':' .. ARGV[10], 1)
        redis.call('HINCRBY', KEYS[1], 'camera_id:' .. c[1] .. ':' .. ARGV[11], 1)
      end
    end
    applied = 1
  end
elseif ARGV[1] == 'anomaly' then
  if redis.call('SADD', KEYS[3], ARGV[5]) == 1 then
    redis.call('HINCRBY', KEYS[1], 'anomalies:' .. ARGV[6], 1)
    applied = 1
  end
end
if applied == 1 then
  for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[4]) end
end
redis.call('XACK', KEYS[4], ARGV[2], ARGV[3])
return applied
"""
"""KEYS: counters, latencies, anomaly ids, stream. ARGV: type, group, entry id, ttl, id, then
for decisions: latency, damaged, misplaced, fallback, zone, camera; for anomalies: kind."""

Entry = tuple[bytes, dict[bytes, bytes]]


def _lineages(client: redis.Redis) -> tuple[str, str | None]:
    """(the current Redis data history's replication id, the one the windows were built in)."""
    try:
        replid = str(client.info("replication")["master_replid"])
    except (redis.ResponseError, KeyError):  # INFO refused (some managed services): key presence only
        replid = "unknown"
    raw: Any = client.get(LINEAGE_KEY)
    return replid, raw.decode() if isinstance(raw, bytes) else raw


def windows_are_current(client: redis.Redis) -> bool:
    """Whether the windows were built in this Redis data history (else a rebuild is still due:
    after a flush, a restart without persistence or a failover they may miss what was lost)."""
    replid, recorded = _lineages(client)
    return recorded == replid


def _arguments(fields: dict[bytes, bytes]) -> tuple[str, int, list[str]] | None:
    """(facility, window minute, type-specific ARGV) of an entry; None for entries we do not count."""
    f = {k.decode(): v.decode() for k, v in fields.items()}
    kind = f.get("type")
    try:
        if kind == "decision":
            e2e = f.get("e2e_ms", "")
            zone, expected = f.get("zone", ""), f.get("expected_zone", "")
            return (
                f["facility_id"],
                minute_of(int(f["event_time_ms"])),
                [
                    "decision",
                    f["event_id"],
                    e2e if e2e else repr(NO_LATENCY),
                    "1" if f.get("condition", "ok") != "ok" else "0",
                    "1" if expected and zone != expected else "0",
                    f.get("fallback", "0"),
                    zone,
                    f.get("camera_id", ""),
                ],
            )
        if kind == "anomaly":
            return (
                f["facility_id"],
                minute_of(int(f["flagged_at_ms"])),
                ["anomaly", f["anomaly_id"], f["kind"]],
            )
    except (KeyError, ValueError):
        log.warning("malformed stream entry skipped: %s", f)
    return None


class WindowAggregator:
    """Reads every ``wv:stream:*`` as one member of ``group``; call :meth:`run` or the steps."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        group: str = DEFAULT_GROUP,
        consumer: str | None = None,
        ttl_s: int = 6 * 3600,
        count: int = 500,
        block_ms: int = 1000,
        min_idle_ms: int = 30_000,
        discover_every_s: float = 10.0,
        repair: WindowRepair | None = None,
        lineage_every_s: float = 2.0,
    ) -> None:
        self._client = client
        self.group = group
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self._ttl = str(ttl_s)
        self._count = count
        self._block_ms = block_ms
        self.min_idle_ms = min_idle_ms
        self._discover_every_s = discover_every_s
        self._streams: list[str] = []
        self._discovered_at = -float("inf")
        self._script = client.register_script(_APPLY)
        self._repair = repair
        self._lineage_every_s = lineage_every_s
        self._lineage_at = -float("inf")

    # --- lineage: rebuilding what a lost Redis history took with it ---------------------------
    def check_lineage(self) -> bool:
        """Rebuild recent windows if Redis is not the data history they were built in; True if rebuilt."""
        if self._repair is None:
            return False
        replid, recorded = _lineages(self._client)
        self._lineage_at = time.monotonic()
        if recorded == replid:
            return False
        reason = "no lineage recorded" if recorded is None else f"replication id was {recorded}"
        log.warning("Redis data history changed (%s, now %s): rebuilding recent windows", reason, replid)
        written = self._repair.recent(self._client)
        self._client.set(LINEAGE_KEY, replid)
        metrics.WINDOW_REBUILDS.labels("lineage").inc()
        log.info("rebuilt %d windows from the database", written)
        return True

    # --- streams and groups ---------------------------------------------------------------
    def streams(self) -> list[str]:
        """The facility streams, rediscovered every few seconds; joins the group on new ones."""
        if time.monotonic() - self._discovered_at > self._discover_every_s:
            found = sorted(
                k.decode() for k in self._client.scan_iter(match=f"{STREAM_PREFIX}*", _type="STREAM")
            )
            for stream in found:  # all, not only new ones: a Redis restarted empty lost the groups too
                try:
                    self._client.xgroup_create(stream, self.group, id="0", mkstream=True)
                except redis.ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise
            self._streams = found
            self._discovered_at = time.monotonic()
        return self._streams

    # --- applying entries -----------------------------------------------------------------
    def apply(self, stream: str, entries: Sequence[Entry]) -> int:
        """Count (if new) and acknowledge each entry atomically; returns how many were new."""
        if not entries:
            return 0
        gaps = [(i, f) for i, f in entries if f.get(b"type") == b"gap"]
        if gaps:
            entries = [(i, f) for i, f in entries if f.get(b"type") != b"gap"]
        counted = []  # per pipeline command: does its reply say "counted" (scripts) or not (acks)
        with self._client.pipeline(transaction=False) as pipe:
            for entry_id, fields in entries:
                parsed = _arguments(fields)
                counted.append(parsed is not None)
                if parsed is None:
                    pipe.xack(stream, self.group, entry_id)
                    continue
                facility, minute, argv = parsed
                kind, ident, *rest = argv
                self._script(
                    keys=[*window_keys(facility, minute), stream],
                    args=[kind, self.group, entry_id, self._ttl, ident, *rest],
                    client=pipe,
                )
            results = pipe.execute() if entries else []
        applied = sum(1 for r, script in zip(results, counted, strict=True) if script and r == 1)
        metrics.WINDOW_ENTRIES.labels("stream", "applied").inc(applied)
        metrics.WINDOW_ENTRIES.labels("stream", "duplicate").inc(len(entries) - applied)
        for entry_id, fields in gaps:
            self._fill_gap(stream, entry_id, fields)
        return applied

    def _fill_gap(self, stream: str, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        """Rebuild the minutes a ``gap`` entry names, then acknowledge it (pending if that fails)."""
        f = {k.decode(): v.decode() for k, v in fields.items()}
        if self._repair is None:
            log.warning("fan-out gap in %s (%s entries) not repaired: no database", stream, f.get("dropped"))
        else:
            try:
                first, last = minute_of(int(f["first_ms"])), minute_of(int(f["last_ms"])) + 60
                start, end = datetime.fromtimestamp(first, UTC), datetime.fromtimestamp(last, UTC)
                written = self._repair.span(self._client, f["facility_id"], start, end)
            except (KeyError, ValueError):
                log.warning("malformed gap entry skipped: %s", f)
            except psycopg.Error as exc:  # keep the entry pending: XAUTOCLAIM retries it
                log.warning("fan-out gap in %s not repaired yet (%s); retrying later", stream, exc)
                return
            else:
                metrics.WINDOW_REBUILDS.labels("gap").inc()
                log.info(
                    "fan-out gap of %s entries in %s: %d windows rebuilt (%s to %s)",
                    f.get("dropped"), stream, written, start.isoformat(), end.isoformat(),
                )  # fmt: skip
        self._client.xack(stream, self.group, entry_id)

    def step(self, block_ms: int | None = None) -> int:
        """Read new entries of every stream once (blocking up to ``block_ms``) and apply them."""
        streams = self.streams()
        if not streams:
            time.sleep((block_ms if block_ms is not None else self._block_ms) / 1000)
            return 0
        replies: Any = self._client.xreadgroup(
            self.group,
            self.consumer,
            {s: ">" for s in streams},
            count=self._count,
            block=self._block_ms if block_ms is None else block_ms,
        )
        return sum(self.apply(stream.decode(), entries) for stream, entries in replies or ())

    def recover(self) -> int:
        """Take over and apply entries other consumers read but never acknowledged."""
        applied = 0
        for stream in self.streams():
            cursor = "0-0"
            while True:
                cursor, entries, *_ = self._client.xautoclaim(
                    stream, self.group, self.consumer, self.min_idle_ms, start_id=cursor, count=self._count
                )
                claimed = [(i, f) for i, f in entries if f]  # trimmed entries come back empty
                if claimed:
                    log.info("claimed %d pending entries of %s", len(claimed), stream)
                applied += self.apply(stream, claimed)
                if cursor in (b"0-0", "0-0"):
                    break
        return applied

    def run(self, stop: threading.Event, *, recover_every_s: float = 15.0) -> None:
        """Apply entries until ``stop``; recover abandoned ones now and then; ride out Redis outages."""
        recovered_at = -float("inf")
        delay = 0.1
        while not stop.is_set():
            try:
                if time.monotonic() - self._lineage_at > self._lineage_every_s:
                    self.check_lineage()
                if time.monotonic() - recovered_at > recover_every_s:
                    self.recover()
                    recovered_at = time.monotonic()
                self.step()
                delay = 0.1
            except redis.RedisError as exc:
                if "NOGROUP" in str(exc):  # Redis lost the stream or group: find them again now
                    self._discovered_at = -float("inf")
                self._lineage_at = -float("inf")  # whatever failed, Redis may have lost data
                log.warning("redis unavailable (%s); retrying in %.1f s", exc, delay)
                stop.wait(delay)
                delay = min(delay * 2, 5.0)
            except psycopg.Error as exc:  # a rebuild's database error: retried, never fatal
                self._lineage_at = -float("inf")  # the pending lineage rebuild comes first again
                log.warning("window rebuild failed (%s); retrying in %.1f s", exc, delay)
                stop.wait(delay)
                delay = min(delay * 2, 5.0)
