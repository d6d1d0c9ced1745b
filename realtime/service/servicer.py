"""``WarehouseVisionService``: the edge's direct event stream, the operators' two queries, and the
live view of a facility read from the per-minute windows on Redis.

``StreamDetectionEvents`` validates each batch like Kafka ingest does and stores it through the
same :class:`EventSink` (one transaction per batch, each event's anomaly flags stored with it:
they travel inside their events and on no other path); the ``InferenceAck`` goes out only after
that commit, so the edge may delete exactly what was acknowledged. While the database is down a
batch is retried until the call's deadline, but at most ``WV_GRPC_MAX_CALL_S`` from the batch's
arrival (a call without a deadline would otherwise hold a handler thread for ever); then the call
ends ``UNAVAILABLE`` and the edge replays from its outbox. A caller that cancels (the edge does
when its acknowledgement wait runs out) stops the retries at once. Queries run with a statement
timeout equal to the time left, capped the same way, and end ``DEADLINE_EXCEEDED`` when it passes.
``GetFacilityLive`` never touches the database: it reads the windows ``wv realtime windows``
keeps (and rebuilds from the database after a Redis loss), so a dashboard polling every few
seconds costs two Redis round trips. ``ListCameras`` answers from the camera registry on the home
database (where ``wv db cameras`` writes it; the shards only mirror it); edges with
``cameras_from: registry`` poll it.

With facility shards (``WV_SHARD_MAP``) a stream batch is split by facility and each shard's part
stored through that shard's sink (the acknowledgement waits for all; a replay after a failure is
deduplicated where a part already landed). ``GetAnomalyReport`` asks the facility's shard.
``QueryPackageHistory`` asks every shard at once and merges: a package crosses facilities (a
transfer, a return), so its history may lie on several shards, and its id is the shipper's
barcode, which names no facility; the lookup is an index probe per shard, run in parallel.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc
import psycopg
import redis

from contract.events import from_timestamp, to_timestamp
from contract.proto import warehouse_vision_pb2 as pb
from contract.proto import warehouse_vision_pb2_grpc as pb_grpc
from realtime.codec import MAX_TEXT_LENGTH, Validator
from realtime.resilience import TRANSIENT_ERRORS, call_with_retry
from realtime.sink import EventSink
from realtime.storage import queries
from realtime.storage.facilities import RegistrationError, list_cameras
from realtime.storage.shards import HOME
from realtime.storage.writer import DeadLetter, WriteResult
from realtime.windows.model import Window, read_windows

log = logging.getLogger(__name__)

GRPC_SOURCE = "grpc"
_MARGIN_S = 0.2
"""Stop retrying this long before the deadline so the error still reaches the caller (an attempt
against a database that refuses connections takes a few milliseconds, more on a loaded host)."""
_YEAR_10000 = 253402300800
LIVE_MINUTES_DEFAULT, LIVE_MINUTES_MAX = 15, 360
"""``GetFacilityLive``'s span when the request names none, and the most it serves (windows expire
after ``WV_WINDOW_TTL_S``, 6 h by default)."""


def _bad_identifier(value: str) -> bool:
    """Not an id the database could hold (PostgreSQL text refuses NUL); no such row exists."""
    return "\x00" in value or len(value) > MAX_TEXT_LENGTH


def _time_left(context: grpc.ServicerContext, cap_at: float) -> float:
    """Seconds to the caller's deadline or to ``cap_at`` (monotonic), whichever comes first (a call
    without a deadline reports one in the far future)."""
    remaining = context.time_remaining()
    capped = cap_at - time.monotonic()
    return capped if remaining is None else min(remaining, capped)


class _Budget:
    """How long a call may keep retrying: until the caller went away, or until less than a margin
    is left of its deadline or of ``max_s`` from now; backoff sleeps never run past that point."""

    def __init__(self, context: grpc.ServicerContext, max_s: float) -> None:
        self._context = context
        self._cap_at = time.monotonic() + max_s

    def give_up(self) -> bool:
        return not self._context.is_active() or _time_left(self._context, self._cap_at) < _MARGIN_S

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, min(seconds, _time_left(self._context, self._cap_at) - _MARGIN_S)))


def _require_facility(facility_id: str, context: grpc.ServicerContext) -> None:
    """Abort with ``INVALID_ARGUMENT`` unless ``facility_id`` is given and could be stored."""
    if not facility_id:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "facility_id is required")
    if _bad_identifier(facility_id):
        context.abort(
            grpc.StatusCode.INVALID_ARGUMENT, f"facility_id: at most {MAX_TEXT_LENGTH} chars, no NUL"
        )


Connections = Callable[[float | None], AbstractContextManager[psycopg.Connection]]
"""Lends a connection, waiting at most the given seconds for a free one (a pool's ``connection``)."""


@dataclass(frozen=True)
class Shard:
    """One facility shard as the service uses it: its sink for writes, its pool for queries."""

    sink: EventSink
    connections: Connections


class WarehouseVisionServicer(pb_grpc.WarehouseVisionServiceServicer):
    """Handlers; thread-safe (each call borrows its own connection)."""

    def __init__(
        self,
        shards: Mapping[str, Shard],
        shard_of: Callable[[str], str],
        validator: Validator,
        windows: redis.Redis | None = None,
        *,
        max_call_s: float,
    ) -> None:
        self._shards = shards
        self._max_call_s = max_call_s
        self._shard_of = shard_of
        self._validator = validator
        self._windows = windows
        self._lookups = (
            ThreadPoolExecutor(len(shards) * 4, thread_name_prefix="wv-grpc-shard")
            if len(shards) > 1
            else None
        )

    def close(self) -> None:
        if self._lookups is not None:
            self._lookups.shutdown(wait=False)

    def StreamDetectionEvents(
        self, request_iterator: Iterator[pb.DetectionBatch], context: grpc.ServicerContext
    ) -> Iterator[pb.InferenceAck]:
        for batch in request_iterator:
            budget = _Budget(context, self._max_call_s)  # each batch's retries from its arrival
            result = WriteResult()
            try:
                # The facility registry is loaded on first use: until then validating needs the database.
                decoded = call_with_retry(
                    functools.partial(self._validator.events, batch.events),
                    breaker=self._shards[HOME].sink.breaker,
                    give_up=budget.give_up,
                    sleep=budget.sleep,
                )
                letters = [DeadLetter(r, GRPC_SOURCE) for r in decoded.rejections]
                parts: dict[str, list[pb.DetectionEvent]] = {HOME: []} if letters else {}
                for event in decoded.events:
                    parts.setdefault(self._shard_of(event.facility_id), []).append(event)
                for name, events in parts.items():
                    result += self._shards[name].sink.store(
                        events,
                        (),
                        letters if name == HOME else (),
                        source=GRPC_SOURCE,
                        give_up=budget.give_up,
                        sleep=budget.sleep,
                    )
            except TRANSIENT_ERRORS as exc:
                log.warning("batch %s not stored before the deadline: %s", batch.batch_id, exc)
                context.abort(grpc.StatusCode.UNAVAILABLE, "database unavailable; retry the batch later")
            refused = {d.rejection.event_id for d in result.rejected}
            yield pb.InferenceAck(
                batch_id=batch.batch_id,
                acknowledged_event_ids=[e.event_id for e in decoded.events if e.event_id not in refused],
                rejected=[
                    pb.RejectedEvent(event_id=d.rejection.event_id or "", reason=d.rejection.text)
                    for d in (*letters, *result.rejected)
                ],
                written=result.events_written,
                duplicates=result.event_duplicates,
            )

    @contextmanager
    def _query(self, context: grpc.ServicerContext, shard: str) -> Iterator[psycopg.Connection]:
        """A connection to ``shard`` whose statements stop when the caller's deadline passes."""
        remaining = _time_left(context, time.monotonic() + self._max_call_s)
        try:
            with self._shards[shard].connections(remaining) as conn, conn.transaction():
                timeout_ms = max(1, int((remaining - _MARGIN_S) * 1000))
                conn.execute("SELECT set_config('statement_timeout', %s, true)", (str(timeout_ms),))
                yield conn
        except psycopg.errors.QueryCanceled:
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "query did not finish before the deadline")
        except TRANSIENT_ERRORS:
            where = f" (facility shard {shard})" if len(self._shards) > 1 else ""
            context.abort(grpc.StatusCode.UNAVAILABLE, f"database unavailable{where}; retry later")

    def _package_rows(
        self, context: grpc.ServicerContext, shard: str, package_id: str
    ) -> queries.PackageRows:
        with self._query(context, shard) as conn:
            return queries.package_rows(conn, package_id)

    def QueryPackageHistory(self, request: pb.PackageID, context: grpc.ServicerContext) -> pb.PackageTimeline:
        if not request.package_id:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "package_id is required")
        if _bad_identifier(request.package_id):
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"package_id: at most {MAX_TEXT_LENGTH} chars, no NUL"
            )
        if self._lookups is None:
            rows = self._package_rows(context, HOME, request.package_id)
        else:  # every shard at once; one that fails fails the call (a partial history would mislead)
            lookups = [
                self._lookups.submit(self._package_rows, context, name, request.package_id)
                for name in self._shards
            ]
            rows = queries.merge_package_rows([lookup.result() for lookup in lookups])
        timeline = queries.package_timeline(request.package_id, rows)
        if timeline is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"package {request.package_id!r} was never seen")
        assert timeline is not None  # abort() raised otherwise
        return timeline

    def GetAnomalyReport(
        self, request: pb.AnomalyReportRequest, context: grpc.ServicerContext
    ) -> pb.AnomalyReport:
        _require_facility(request.facility_id, context)
        if not (request.HasField("start") and request.HasField("end")):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "start and end are required")
        if not all(0 <= t.seconds < _YEAR_10000 for t in (request.start, request.end)):
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "start and end must fall in the years 1970 to 9999"
            )
        start, end = from_timestamp(request.start), from_timestamp(request.end)
        if end <= start:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "end must be after start")
        with self._query(context, self._shard_of(request.facility_id)) as conn:
            return queries.anomaly_report(conn, request.facility_id, start, end, request.max_flags)

    def GetFacilityLive(
        self, request: pb.FacilityLiveRequest, context: grpc.ServicerContext
    ) -> pb.FacilityLive:
        _require_facility(request.facility_id, context)
        if request.minutes > LIVE_MINUTES_MAX:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"minutes: at most {LIVE_MINUTES_MAX}")
        if self._windows is None:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, "no Redis configured (WV_REDIS_URL): no live windows"
            )
        assert self._windows is not None
        end = datetime.now(UTC)
        start = end.replace(second=0, microsecond=0) - timedelta(
            minutes=(request.minutes or LIVE_MINUTES_DEFAULT) - 1
        )
        try:
            windows = read_windows(self._windows, request.facility_id, start, end)
        except (redis.RedisError, OSError):
            context.abort(grpc.StatusCode.UNAVAILABLE, "live windows unavailable (Redis); retry later")
        return facility_live(request.facility_id, start, end, windows)

    def ListCameras(self, request: pb.CameraListRequest, context: grpc.ServicerContext) -> pb.CameraList:
        _require_facility(request.facility_id, context)
        try:
            with self._query(context, HOME) as conn:
                cameras = list_cameras(conn, request.facility_id)
        except RegistrationError as exc:
            context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        reply = pb.CameraList(facility_id=request.facility_id)
        for c in cameras:
            camera = reply.cameras.add(
                camera_id=c.camera_id,
                source_uri=c.source_uri or "",
                enabled=c.enabled,
                description=c.description,
            )
            if c.updated_at is not None:
                camera.updated_at.CopyFrom(to_timestamp(c.updated_at))
        return reply


def facility_live(facility_id: str, start: datetime, end: datetime, windows: list[Window]) -> pb.FacilityLive:
    """The reply for ``windows`` (one facility's minutes in ``[start, end)``) with the span's totals."""
    reply = pb.FacilityLive(facility_id=facility_id, start=to_timestamp(start), end=to_timestamp(end))
    for window in windows:
        minute = reply.windows.add(
            minute=to_timestamp(window.minute),
            packages=window.counts.packages,
            damaged=window.counts.damaged,
            misplaced=window.counts.misplaced,
            fallback=window.counts.fallback,
        )
        if window.p99_e2e_ms is not None:
            minute.p99_end_to_end_ms = window.p99_e2e_ms
        minute.anomalies.update(window.anomalies)
    reply.packages = sum(w.counts.packages for w in windows)
    reply.damaged = sum(w.counts.damaged for w in windows)
    reply.anomalies = sum(sum(w.anomalies.values()) for w in windows)
    reply.damage_rate = reply.damaged / reply.packages if reply.packages else 0.0
    return reply
