"""The outbox: every event is written here before any attempt to publish it.

Keys are ``a``/``n`` (event with / without anomalies) + an 8-byte big-endian sequence number, so
one ordered scan yields anomalies first and, within each class, oldest first — the replay order.
Values are an 8-byte creation time (ms since the epoch) + the serialized `DetectionEvent`, its
anomaly flags inside it: the flags travel with their event and nowhere else. This stored format is
the one older edges wrote (they too stored only events, and derived separate flag records when
sending), so an upgraded edge relays a full outbox left by an older version as it is, with no
migration; the ``a`` class still only orders replay and protects flagged events from the quota.

An entry leaves the outbox only when the centre acknowledged it (`ack`), when it is older than the
TTL (`expire`), or when the disk quota forces it out (`put`: oldest non-anomaly events first,
anomalies only when nothing else is left). Every removal other than an ack is counted by reason.
The quota applies to the stored keys and values; RocksDB's own files add some overhead on top.
Memory is bounded by the write buffer (`memtable_bytes`): the resident set grows by about that much
as events arrive, then drops when RocksDB flushes it to disk (RocksDB's 64 MB default made a soaking
edge look like it leaked ~2 MB a minute).
"""

from __future__ import annotations

import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rocksdict import Options, Rdict, ReadOptions, WriteBatch, WriteOptions

ANOMALY, NORMAL = b"a", b"n"
_HEADER = struct.Struct(">Q")
_SEQ = struct.Struct(">Q")


class OutboxError(RuntimeError):
    """The outbox cannot be opened (locked by another process, unreadable directory)."""


@dataclass(frozen=True)
class OutboxEntry:
    key: bytes
    payload: bytes
    created_ms: int

    @property
    def anomaly(self) -> bool:
        return self.key[:1] == ANOMALY

    @property
    def size(self) -> int:
        return len(self.key) + _HEADER.size + len(self.payload)


class Outbox:
    """Thread-safe: the pipeline writes while the relay reads and acknowledges."""

    def __init__(
        self,
        path: Path | str,
        ttl_s: float = 48 * 3600,
        quota_bytes: int = 512 * 2**20,
        sync: bool = True,
        clock: Callable[[], float] = time.time,
        memtable_bytes: int = 16 * 2**20,
    ) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.ttl_s = ttl_s
        self.quota_bytes = quota_bytes
        self._clock = clock
        self._lock = threading.Lock()
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        opts.set_write_buffer_size(memtable_bytes)
        try:
            self._db = Rdict(str(self.path), opts)
        except Exception as exc:  # rocksdict raises a bare Exception with RocksDB's message
            hint = (
                " (another edge process uses it: give each its own outbox.path)" if "lock" in str(exc) else ""
            )
            raise OutboxError(f"cannot open the outbox at {self.path}: {exc}{hint}") from None
        self._write_opts = WriteOptions()
        self._write_opts.sync = sync
        self.counters: Counter[str] = Counter()
        """written, acked, expired, dropped_quota, dropped_quota_anomaly."""
        self._floor: dict[bytes, bytes] = {}
        self._bytes = 0
        self._count = 0
        self._next_seq = 0
        for entry in self._scan():
            self._bytes += entry.size
            self._count += 1
            self._next_seq = max(self._next_seq, _SEQ.unpack(entry.key[1:])[0])
        self._next_seq += 1

    # -- writing ---------------------------------------------------------------------------

    def put(self, payloads: Sequence[tuple[bytes, bool]]) -> list[bytes]:
        """Durably store (serialized event, has_anomalies) pairs in one write; returns their keys."""
        if not payloads:
            return []
        now_ms = int(self._clock() * 1000)
        with self._lock:
            batch, keys, added = WriteBatch(raw_mode=True), [], 0
            for payload, is_anomaly in payloads:
                key = (ANOMALY if is_anomaly else NORMAL) + _SEQ.pack(self._next_seq)
                self._next_seq += 1
                batch.put(key, _HEADER.pack(now_ms) + payload)
                keys.append(key)
                added += len(key) + _HEADER.size + len(payload)
            self._db.write(batch, self._write_opts)
            self._bytes += added
            self._count += len(keys)
            self.counters["written"] += len(keys)
            self._enforce_quota(set(keys))
        return keys

    def _enforce_quota(self, keep: set[bytes]) -> None:
        """Drop oldest non-anomaly events, then oldest anomalies, until under the quota."""
        for prefix, reason in ((NORMAL, "dropped_quota"), (ANOMALY, "dropped_quota_anomaly")):
            if self._bytes <= self.quota_bytes:
                return
            victims = []
            freed = 0
            for entry in self._scan(prefix):
                if self._bytes - freed <= self.quota_bytes:
                    break
                if entry.key in keep and prefix == ANOMALY:
                    continue
                victims.append(entry.key)
                freed += entry.size
            self._delete(victims, reason)

    # -- reading and removal ---------------------------------------------------------------

    def pending(
        self, limit: int, skip: set[bytes] | None = None, max_bytes: int = 900_000
    ) -> list[OutboxEntry]:
        """Up to `limit` entries to publish: anomalies first, oldest first, excluding `skip`."""
        out: list[OutboxEntry] = []
        size = 0
        with self._lock:
            for entry in self._scan():
                if skip and entry.key in skip:
                    continue
                if out and size + entry.size > max_bytes:
                    break
                out.append(entry)
                size += entry.size
                if len(out) >= limit:
                    break
        return out

    def ack(self, keys: Iterable[bytes]) -> int:
        """Delete entries the centre acknowledged; returns how many were still present."""
        with self._lock:
            return self._delete(list(keys), "acked")

    def expire(self) -> int:
        """Delete entries older than the TTL (counted as `expired`); returns how many."""
        cutoff_ms = int((self._clock() - self.ttl_s) * 1000)
        with self._lock:
            victims = []
            for prefix in (ANOMALY, NORMAL):
                for entry in self._scan(prefix):
                    if entry.created_ms >= cutoff_ms:
                        break
                    victims.append(entry.key)
            return self._delete(victims, "expired")

    def _delete(self, keys: list[bytes], reason: str) -> int:
        if not keys:
            return 0
        batch, removed, freed = WriteBatch(raw_mode=True), 0, 0
        for key in dict.fromkeys(keys):
            value = self._db.get(key)
            if value is None:
                continue
            batch.delete(key)
            removed += 1
            freed += len(key) + len(value)
        if removed:
            self._db.write(batch, self._write_opts)
            self._bytes -= freed
            self._count -= removed
            self.counters[reason] += removed
        return removed

    def _scan(self, prefix: bytes | None = None) -> Iterable[OutboxEntry]:
        """Entries of one class (or anomalies then the rest), oldest first.

        Each class starts at its floor, the first key the previous scan found: keys only grow, so
        nothing live lies below it, and seeking there skips the delete tombstones that pile up at
        the front of a queue kept in an LSM tree (a scan from the very first key slowed replay
        by ~25 % at 50,000 events, more the longer the outage)."""
        for cls in (prefix,) if prefix is not None else (ANOMALY, NORMAL):
            bounds = ReadOptions()
            bounds.set_iterate_upper_bound(bytes([cls[0] + 1]))  # else a seek past the class's end
            it = self._db.iter(bounds)  # would wade through the next class's tombstones
            it.seek(self._floor.get(cls, cls))
            # An empty class gets the next sequence number as its floor: later keys lie above it.
            self._floor[cls] = cls + _SEQ.pack(self._next_seq)
            first = True
            while it.valid():
                key = it.key()
                if key[:1] != cls:
                    break
                if first:
                    self._floor[cls], first = key, False
                value = it.value()
                yield OutboxEntry(key, value[_HEADER.size :], _HEADER.unpack_from(value)[0])
                it.next()

    # -- state -----------------------------------------------------------------------------

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return self._count

    def oldest_age_s(self) -> float:
        """Age of the oldest entry (0 when empty)."""
        with self._lock:
            oldest = [next(iter(self._scan(p)), None) for p in (ANOMALY, NORMAL)]
        created = [e.created_ms for e in oldest if e is not None]
        return max(0.0, self._clock() - min(created) / 1000) if created else 0.0

    def flush(self) -> None:
        with self._lock:
            self._db.flush_wal(True)

    def close(self) -> None:
        with self._lock:
            self._db.close()
