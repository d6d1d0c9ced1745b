"""Per-facility Redis streams ``wv:stream:<facility>``: decisions and anomalies, after commit.

Entries are flat string maps so any live consumer (dashboards, the window aggregator) can read
them without the proto. Streams are capped with ``MAXLEN ~`` (approximate trimming is O(1)).
Publishing is best effort: a Redis outage never stops ingest (after a failure, fan-out pauses
with a growing back-off so a hanging Redis does not slow every batch). Entries that could not be
published are counted and logged, and remembered per facility as a *gap* (how many, and the
range of their event times); the first publish that succeeds afterwards appends one ``gap``
entry per facility to its stream, after the entries of that batch. Every event of a gap was
committed before the gap entry was written, so the window aggregator, on reading it, rebuilds
those minutes from the database (:mod:`realtime.windows.recompute`) and the windows are whole
again without anyone acting.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime

import redis

from contract.events import CONDITION_NAME
from contract.proto import warehouse_vision_pb2 as pb
from realtime import metrics
from realtime.storage.rows import flag_row

log = logging.getLogger(__name__)

STREAM_PREFIX = "wv:stream:"


def stream_key(facility_id: str) -> str:
    return f"{STREAM_PREFIX}{facility_id}"


def _ms(when: datetime) -> str:
    return str(round(when.timestamp() * 1000))


def decision_entry(e: pb.DetectionEvent) -> dict[str, str]:
    """The stream entry of a decision event."""
    ts = e.event_time
    return {
        "type": "decision",
        "event_id": e.event_id,
        "facility_id": e.facility_id,
        "camera_id": e.camera_id,
        "package_id": e.package_id,
        "zone": e.zone,
        "expected_zone": e.expected_zone,
        "condition": CONDITION_NAME[e.condition],
        "fallback": "1" if e.fallback else "0",
        "e2e_ms": repr(float(e.timings.end_to_end_ms)) if e.HasField("timings") else "",
        "event_time_ms": str(ts.seconds * 1000 + ts.nanos // 1_000_000),
        "model_version": e.model_version,
    }


def anomaly_entry(flag: pb.AnomalyFlag, event: pb.DetectionEvent | None = None) -> dict[str, str]:
    """The stream entry of a flag (embedded flags resolved against their event like the writer does)."""
    (anomaly_id, flagged_at, facility, camera, package, zone, event_id, kind, severity, score, source, _) = (
        flag_row(flag, event)
    )
    return {
        "type": "anomaly",
        "anomaly_id": str(anomaly_id),
        "facility_id": str(facility),
        "camera_id": str(camera),
        "package_id": str(package),
        "zone": str(zone),
        "event_id": str(event_id),
        "kind": str(kind),
        "severity": str(severity),
        "score": repr(float(score)),  # type: ignore[arg-type]
        "source": str(source),
        "flagged_at_ms": _ms(flagged_at),  # type: ignore[arg-type]
    }


def gap_entry(facility_id: str, first_ms: int, last_ms: int, dropped: int) -> dict[str, str]:
    """The entry announcing ``dropped`` entries of ``facility_id`` with event times in ``[first_ms, last_ms]``
    that never reached the stream (all of them committed to the database before this entry)."""
    return {
        "type": "gap",
        "facility_id": facility_id,
        "first_ms": str(first_ms),
        "last_ms": str(last_ms),
        "dropped": str(dropped),
    }


_XADD_MANY = """
local width = tonumber(ARGV[2])
local added = 0
for first = 3 + width, #ARGV, width do
  local args = {KEYS[1], 'MAXLEN', '~', ARGV[1], '*'}
  for j = 0, width - 1 do
    args[#args + 1] = ARGV[3 + j]
    args[#args + 1] = ARGV[first + j]
  end
  redis.call('XADD', unpack(args))
  added = added + 1
end
return added
"""
"""KEYS[1]: the stream; ARGV: maxlen, field count, field names, then each entry's values."""


class StreamPublisher:
    """Fans committed decisions and flags out to their facility's stream.

    Entries of one stream and shape travel as one script call (``XADD`` per entry inside
    Redis), all calls in one pipeline: a batch costs one round trip and a handful of commands
    instead of one command per decision.
    """

    def __init__(
        self, client: redis.Redis, *, maxlen: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._client = client
        self.maxlen = maxlen
        self._xadd_many = client.register_script(_XADD_MANY)
        self._clock = clock
        self._paused_until = 0.0
        self._pause_s = 0.0
        self._lock = threading.Lock()  # several writer threads publish through one publisher
        self._gaps: dict[str, tuple[int, int, int]] = {}
        """Per facility, entries not published since the last success: (first, last event ms, count)."""

    def publish(self, events: Sequence[pb.DetectionEvent], flags: Sequence[pb.AnomalyFlag] = ()) -> int:
        """Publish; returns entries added, 0 (logged, counted, remembered as a gap) when Redis is unavailable."""
        entries = [(e.facility_id, decision_entry(e)) for e in events if e.kind == pb.EVENT_KIND_DECISION]
        entries += [(e.facility_id, anomaly_entry(f, e)) for e in events for f in e.anomalies]
        entries += [(f.facility_id, anomaly_entry(f)) for f in flags]
        if not entries:
            return 0
        if self._clock() < self._paused_until:  # Redis failed lately: do not slow ingest down
            metrics.STREAM_PUBLISH_FAILURES.inc(len(entries))
            self._remember_gap(entries)
            return 0
        groups: dict[tuple[str, tuple[str, ...]], list[str]] = defaultdict(list)
        gaps = self._take_gaps()  # announced after this batch's entries, in the same pipeline
        for facility, entry in [*entries, *gaps]:
            groups[(stream_key(facility), tuple(entry))].extend(entry.values())
        try:
            with self._client.pipeline(transaction=False) as pipe:
                for (stream, names), values in groups.items():
                    self._xadd_many(
                        keys=[stream], args=[self.maxlen, len(names), *names, *values], client=pipe
                    )
                pipe.execute()
        except redis.RedisError as exc:
            metrics.STREAM_PUBLISH_FAILURES.inc(len(entries))
            self._remember_gap(entries)
            self._restore_gaps(gaps)
            self._pause_s = min(max(2 * self._pause_s, 0.5), 30.0)
            self._paused_until = self._clock() + self._pause_s
            log.warning(
                "stream fan-out of %d entries failed, pausing it %.1f s (windows can be rebuilt): %s",
                len(entries),
                self._pause_s,
                exc,
            )
            return 0
        self._pause_s = 0.0
        if gaps:
            log.info(
                "stream fan-out resumed; gaps announced: %s", ", ".join(g["facility_id"] for _, g in gaps)
            )
        return len(entries)

    def _remember_gap(self, entries: Sequence[tuple[str, dict[str, str]]]) -> None:
        with self._lock:
            for facility, entry in entries:
                when = int(entry.get("event_time_ms") or entry["flagged_at_ms"])
                first, last, count = self._gaps.get(facility, (when, when, 0))
                self._gaps[facility] = (min(first, when), max(last, when), count + 1)

    def _take_gaps(self) -> list[tuple[str, dict[str, str]]]:
        with self._lock:
            taken, self._gaps = self._gaps, {}
        return [(f, gap_entry(f, first, last, n)) for f, (first, last, n) in sorted(taken.items())]

    def _restore_gaps(self, gaps: Sequence[tuple[str, dict[str, str]]]) -> None:
        """Put back gaps whose announcement failed (merged with any remembered meanwhile)."""
        with self._lock:
            for facility, entry in gaps:
                first, last, n = int(entry["first_ms"]), int(entry["last_ms"]), int(entry["dropped"])
                if facility in self._gaps:
                    f0, l0, n0 = self._gaps[facility]
                    first, last, n = min(first, f0), max(last, l0), n + n0
                self._gaps[facility] = (first, last, n)
