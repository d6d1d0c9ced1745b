"""``WarehouseVisionService``: the edge's direct event stream, the operators' two queries, and the
live view of a facility read from the per-minute windows on Redis.

``StreamDetectionEvents`` validates each batch like Kafka ingest does and stores it through the
same :class:`EventSink` (one transaction per batch); the ``InferenceAck`` goes out only after
that commit, so the edge may delete exactly what was acknowledged. While the database is down a
batch is retried until the call's deadline; then the call ends ``UNAVAILABLE`` and the edge
replays from its outbox. Queries run with a statement timeout equal to the time left.
``GetFacilityLive`` never touches the database: it reads the windows ``wv realtime windows``
keeps (and rebuilds from the database after a Redis loss), so a dashboard polling every few
seconds costs two Redis round trips.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta

import grpc
import psycopg
import redis

from contract.events import from_timestamp, to_timestamp
from contract.proto import warehouse_vision_pb2 as pb
from contract.proto import warehouse_vision_pb2_grpc as pb_grpc
from realtime.codec import MAX_TEXT_LENGTH, Validator
from realtime.resilience import TRANSIENT_ERRORS
from realtime.sink import EventSink
from realtime.storage import queries
from realtime.storage.writer import DeadLetter
from realtime.windows.model import Window, read_windows

log = logging.getLogger(__name__)

GRPC_SOURCE = "grpc"
_MARGIN_S = 0.05
"""Stop retrying this long before the deadline so the error still reaches the caller."""
_YEAR_10000 = 253402300800
LIVE_MINUTES_DEFAULT, LIVE_MINUTES_MAX = 15, 360
"""``GetFacilityLive``'s span when the request names none, and the most it serves (windows expire
after ``WV_WINDOW_TTL_S``, 6 h by default)."""


def _bad_identifier(value: str) -> bool:
    """Not an id the database could hold (PostgreSQL text refuses NUL); no such row exists."""
    return "\x00" in value or len(value) > MAX_TEXT_LENGTH


def _give_up(context: grpc.ServicerContext) -> Callable[[], bool]:
    def check() -> bool:
        remaining = context.time_remaining()
        return not context.is_active() or (remaining is not None and remaining < _MARGIN_S)

    return check


def _require_facility(facility_id: str, context: grpc.ServicerContext) -> None:
    """Abort with ``INVALID_ARGUMENT`` unless ``facility_id`` is given and could be stored."""
    if not facility_id:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "facility_id is required")
    if _bad_identifier(facility_id):
        context.abort(
            grpc.StatusCode.INVALID_ARGUMENT, f"facility_id: at most {MAX_TEXT_LENGTH} chars, no NUL"
        )


class WarehouseVisionServicer(pb_grpc.WarehouseVisionServiceServicer):
    """Handlers; thread-safe (each call borrows its own connection)."""

    def __init__(
        self,
        sink: EventSink,
        validator: Validator,
        connections: Callable[[float | None], AbstractContextManager[psycopg.Connection]],
        windows: redis.Redis | None = None,
    ) -> None:
        self._sink = sink
        self._validator = validator
        self._connections = connections
        self._windows = windows

    def StreamDetectionEvents(
        self, request_iterator: Iterator[pb.DetectionBatch], context: grpc.ServicerContext
    ) -> Iterator[pb.InferenceAck]:
        give_up = _give_up(context)
        for batch in request_iterator:
            decoded = self._validator.events(batch.events)
            letters = [DeadLetter(r, GRPC_SOURCE) for r in decoded.rejections]
            try:
                result = self._sink.store(decoded.events, (), letters, source=GRPC_SOURCE, give_up=give_up)
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
    def _query(self, context: grpc.ServicerContext) -> Iterator[psycopg.Connection]:
        """A connection whose statements stop when the caller's deadline passes."""
        remaining = context.time_remaining()
        try:
            with self._connections(remaining) as conn, conn.transaction():
                if remaining is not None:
                    timeout_ms = max(1, int((remaining - _MARGIN_S) * 1000))
                    conn.execute("SELECT set_config('statement_timeout', %s, true)", (str(timeout_ms),))
                yield conn
        except psycopg.errors.QueryCanceled:
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "query did not finish before the deadline")
        except TRANSIENT_ERRORS:
            context.abort(grpc.StatusCode.UNAVAILABLE, "database unavailable; retry later")

    def QueryPackageHistory(self, request: pb.PackageID, context: grpc.ServicerContext) -> pb.PackageTimeline:
        if not request.package_id:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "package_id is required")
        if _bad_identifier(request.package_id):
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"package_id: at most {MAX_TEXT_LENGTH} chars, no NUL"
            )
        with self._query(context) as conn:
            timeline = queries.package_history(conn, request.package_id)
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
        with self._query(context) as conn:
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


def facility_live(facility_id: str, start: datetime, end: datetime, windows: list[Window]) -> pb.FacilityLive:
    """The reply for ``windows`` (one facility's minutes in ``[start, end)``) with the span's totals."""
    reply = pb.FacilityLive(facility_id=facility_id, start=to_timestamp(start), end=to_timestamp(end))
    for window in windows:
        minute = reply.windows.add(
            minute=to_timestamp(window.minute),
            packages=window.packages,
            damaged=window.damaged,
            misplaced=window.misplaced,
            fallback=window.fallback,
        )
        if window.p99_e2e_ms is not None:
            minute.p99_end_to_end_ms = window.p99_e2e_ms
        minute.anomalies.update(window.anomalies)
    reply.packages = sum(w.packages for w in windows)
    reply.damaged = sum(w.damaged for w in windows)
    reply.anomalies = sum(sum(w.anomalies.values()) for w in windows)
    reply.damage_rate = reply.damaged / reply.packages if reply.packages else 0.0
    return reply
