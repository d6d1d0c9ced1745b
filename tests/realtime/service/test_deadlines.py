"""Deadlines on the real service: a query past its deadline (its own, the client helper's default, or
the server's cap for a call without one) ends DEADLINE_EXCEEDED, and a stream batch that cannot be
stored ends UNAVAILABLE at the call's deadline."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import grpc
import psycopg
import pytest
from psycopg import sql

from bench.fixtures.events import EventFactory, detection_batch
from contract.proto import warehouse_vision_pb2 as pb
from contract.proto import warehouse_vision_pb2_grpc as pb_grpc
from realtime.service import client
from realtime.service.server import RunningServer, ServiceConfig, start_server

pytestmark = pytest.mark.timeout(60)
HISTORY = pb.PackageID(package_id="PKG-x")


@contextmanager
def _packages_locked(database_url: str) -> Iterator[None]:
    """Real slowness: every package query waits for this lock until the block ends."""
    with psycopg.connect(database_url) as blocker:
        blocker.execute("LOCK TABLE packages IN ACCESS EXCLUSIVE MODE")
        yield
        blocker.rollback()


@contextmanager
def _database_down(admin_db: psycopg.Connection, database_url: str, keep: int) -> Iterator[None]:
    """No new connections to the test database and every open one but ``keep`` (a backend pid) closed."""
    name = urlsplit(database_url).path.lstrip("/")
    admin_db.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(name)))
    try:
        admin_db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> %s",
            (name, keep),
        )
        yield
    finally:
        admin_db.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(sql.Identifier(name)))


def _ends(call, code: grpc.StatusCode) -> float:
    """Seconds until ``call()`` failed with ``code``."""
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as failed:
        call()
    assert failed.value.code() == code, failed.value.details()
    return time.monotonic() - started


def test_a_unary_call_without_a_timeout_gets_the_client_helpers_default_deadline(
    grpc_server, db, database_url, grpc_token
):
    stub = client.stub(client.channel(f"127.0.0.1:{grpc_server.port}", grpc_token, call_timeout_s=0.5))
    with _packages_locked(database_url):
        took = _ends(lambda: stub.QueryPackageHistory(HISTORY), grpc.StatusCode.DEADLINE_EXCEEDED)
    assert took < 5  # not the server's 60 s cap


@pytest.fixture
def capped_server(database_url: str, grpc_token: str) -> Iterator[RunningServer]:
    """The service with WV_GRPC_MAX_CALL_S = 1."""
    running = start_server(
        ServiceConfig(
            address="127.0.0.1:0", token=grpc_token, database_url=database_url, max_workers=4, max_call_s=1.0
        )
    )
    yield running
    running.stop(grace_s=1)


def test_the_server_caps_a_query_that_arrives_without_a_deadline(capped_server, db, database_url, grpc_token):
    with grpc.insecure_channel(f"127.0.0.1:{capped_server.port}") as bare:  # no client helper: no deadline
        stub = pb_grpc.WarehouseVisionServiceStub(bare)
        metadata = [("authorization", f"Bearer {grpc_token}")]
        with _packages_locked(database_url):
            took = _ends(
                lambda: stub.QueryPackageHistory(HISTORY, metadata=metadata),
                grpc.StatusCode.DEADLINE_EXCEEDED,
            )
        assert 0.8 < took < 10


def test_a_stream_batch_with_the_database_down_ends_unavailable_at_the_deadline(
    grpc_server, db, admin_db, database_url, grpc_token
):
    stub = client.stub(client.channel(f"127.0.0.1:{grpc_server.port}", grpc_token))
    batch = detection_batch(EventFactory("FAC-001", seed=5).package(2))
    with _database_down(admin_db, database_url, keep=db.info.backend_pid):
        took = _ends(
            lambda: list(stub.StreamDetectionEvents(iter([batch]), timeout=2)), grpc.StatusCode.UNAVAILABLE
        )
    assert 1.5 < took < 5  # retried until the deadline, then told
    (ack,) = stub.StreamDetectionEvents(iter([batch]), timeout=20)  # the edge's replay once it is back
    assert ack.written == len(batch.events)


def test_the_server_stops_retrying_a_stream_batch_without_a_deadline_at_its_cap(
    capped_server, db, admin_db, database_url, grpc_token
):
    stub = client.stub(client.channel(f"127.0.0.1:{capped_server.port}", grpc_token))
    batch = detection_batch(EventFactory("FAC-001", seed=6).package(2))
    with _database_down(admin_db, database_url, keep=db.info.backend_pid):
        took = _ends(lambda: list(stub.StreamDetectionEvents(iter([batch]))), grpc.StatusCode.UNAVAILABLE)
    assert 0.5 < took < 5
