"""The gRPC service over two facility shards answers as over one database: the stream stores each
event on its facility's shard, a package's history is gathered from every shard it passed, an
anomaly report comes from the facility's shard, the camera registry from home; a shard that is down
fails only what needs it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import grpc
import psycopg
import pytest
from psycopg import sql

from bench.fixtures.events import DEFAULT_CAMERAS, EventFactory, detection_batch
from bench.fixtures.shards import ASSIGNMENT, FACILITIES
from contract.events import anomaly_flag, to_timestamp
from contract.proto import warehouse_vision_pb2 as pb
from realtime.service import client
from realtime.service.server import RunningServer, ServiceConfig, start_server

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def sharded_server(shards, grpc_token) -> Iterator[RunningServer]:
    running = start_server(
        ServiceConfig(
            address="127.0.0.1:0",
            token=grpc_token,
            database_url=shards.home_url,
            max_workers=4,
            shards=shards,
        )
    )
    yield running
    running.stop(grace_s=1)


def _stub(server: RunningServer, token: str):
    return client.stub(client.channel(f"127.0.0.1:{server.port}", token))


def _batches() -> tuple[list[pb.DetectionBatch], str]:
    """Each facility's packages (one damaged, with its flag), in batches spanning both shards, and
    one package that passed FAC-001 (home) then FAC-003 (east)."""
    start = datetime.now(UTC) - timedelta(minutes=30)
    events = []
    for i, facility in enumerate(FACILITIES):
        factory = EventFactory(facility, seed=70 + i, start=start)
        events += [e for _ in range(3) for e in factory.package(2)]
        flag = anomaly_flag(kind="damaged", facility_id=facility, flagged_at=start, source="edge")
        events += factory.package(1, condition="torn", anomalies=[flag])
    first = EventFactory("FAC-001", seed=80, start=start).package(2)
    travelled = first[-1].package_id
    later = EventFactory("FAC-003", seed=81, start=start + timedelta(minutes=10)).package(
        2, sku=first[-1].sku
    )
    for event in later:
        event.package_id = travelled
    events += [*first, *later]
    events.sort(key=lambda e: e.event_id)  # facilities interleaved
    return [detection_batch(events[i : i + 10], f"b{i}") for i in range(0, len(events), 10)], travelled


def test_the_service_over_two_shards_answers_as_over_one_database(
    shards, one_database, grpc_server, sharded_server, grpc_token
):
    batches, travelled = _batches()
    one, sharded = _stub(grpc_server, grpc_token), _stub(sharded_server, grpc_token)
    acks = [list(stub.StreamDetectionEvents(iter(batches), timeout=20)) for stub in (one, sharded)]
    assert [(a.written, a.duplicates, list(a.acknowledged_event_ids)) for a in acks[0]] == [
        (a.written, a.duplicates, list(a.acknowledged_event_ids)) for a in acks[1]
    ]
    for name, url in shards.urls.items():
        with psycopg.connect(url) as conn:
            held = {f for (f,) in conn.execute("SELECT DISTINCT facility_id FROM package_detections")}
        assert held == {f for f, s in ASSIGNMENT.items() if s == name}

    history = [
        stub.QueryPackageHistory(pb.PackageID(package_id=travelled), timeout=10) for stub in (one, sharded)
    ]
    assert history[0] == history[1]
    assert {e.detection.facility_id for e in history[1].entries if e.HasField("detection")} == {
        "FAC-001",
        "FAC-003",
    }
    assert history[1].facility_id == "FAC-003"  # where it was seen last
    for batch in batches[:3]:
        package = pb.PackageID(package_id=batch.events[0].package_id)
        assert one.QueryPackageHistory(package, timeout=10) == sharded.QueryPackageHistory(
            package, timeout=10
        )
    span = {
        "start": to_timestamp(datetime.now(UTC) - timedelta(hours=1)),
        "end": to_timestamp(datetime.now(UTC)),
    }
    for facility in FACILITIES:
        request = pb.AnomalyReportRequest(facility_id=facility, **span)
        report = sharded.GetAnomalyReport(request, timeout=10)
        assert report.total == 1 and report == one.GetAnomalyReport(request, timeout=10)


def test_a_shard_that_is_down_fails_only_the_calls_that_need_it(shards, admin_db, sharded_server, grpc_token):
    stub = _stub(sharded_server, grpc_token)
    batches, travelled = _batches()
    list(stub.StreamDetectionEvents(iter(batches), timeout=20))
    east = urlsplit(shards.urls["east"]).path.lstrip("/")
    admin_db.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(east)))
    try:
        admin_db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (east,))
        with pytest.raises(grpc.RpcError) as failed:  # part of its history is on the east shard
            stub.QueryPackageHistory(pb.PackageID(package_id=travelled), timeout=5)
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "facility shard east" in failed.value.details()
        span = {
            "start": to_timestamp(datetime.now(UTC) - timedelta(hours=1)),
            "end": to_timestamp(datetime.now(UTC)),
        }
        home_report = stub.GetAnomalyReport(pb.AnomalyReportRequest(facility_id="FAC-001", **span), timeout=5)
        assert home_report.total == 1
        home_only = EventFactory("FAC-002", seed=90).package(1)
        (ack,) = stub.StreamDetectionEvents(iter([detection_batch(home_only, "home")]), timeout=10)
        assert ack.written == len(home_only)
        registered = stub.ListCameras(
            pb.CameraListRequest(facility_id="FAC-003"), timeout=5
        )  # an east facility
        assert [c.camera_id for c in registered.cameras] == sorted(
            DEFAULT_CAMERAS
        )  # the registry lives at home
        assert all(c.enabled and c.HasField("updated_at") for c in registered.cameras)
        with pytest.raises(grpc.RpcError) as unknown:
            stub.ListCameras(pb.CameraListRequest(facility_id="FAC-404"), timeout=5)
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        admin_db.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(sql.Identifier(east)))
