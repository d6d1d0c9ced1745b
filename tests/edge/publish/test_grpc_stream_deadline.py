"""The gRPC transport's stream deadline against the real central service: streams are replaced
cleanly between batches before their deadline (nothing lost, nothing twice), and a batch whose
acknowledgement does not come in time is abandoned by cancelling the call, which stops the
centre retrying it at once."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from prometheus_client import REGISTRY
from psycopg import sql

from bench.fixtures.events import EventFactory
from bench.reliability.faults import wait_until
from edge.config import EdgeConfigError, load_config
from edge.publish.base import TransportError
from edge.publish.grpc import STREAM_METHOD, GrpcTransport
from edge.publish.wire import Outgoing
from edge.service import make_transport
from wv.settings import PlatformSettings

pytestmark = pytest.mark.timeout(60)


def _streams_ended(code: str | None = None) -> float:
    """StreamDetectionEvents calls the server has finished handling (with ``code``, or any)."""
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "wv_grpc_server_handling_seconds"
        for sample in metric.samples
        if sample.name.endswith("_count")
        and sample.labels["method"] == STREAM_METHOD
        and code in (None, sample.labels["code"])
    )


def test_the_stream_is_replaced_before_its_deadline_without_losing_or_repeating_events(
    grpc_server, grpc_token, db
):
    transport = GrpcTransport(f"127.0.0.1:{grpc_server.port}", grpc_token, stream_deadline_s=2.0)
    factory = EventFactory("FAC-001", seed=31)
    closed_ok = _streams_ended("OK")
    sent: list[str] = []
    try:
        while transport.connects < 3:  # each stream carries batches until under 1 s of it is left
            events = factory.package(1)
            delivery = transport.send([Outgoing.of(e) for e in events], timeout_s=1.0)
            assert sorted(delivery.acked) == sorted(e.event_id for e in events) and not delivery.rejected
            sent += delivery.acked
    finally:
        transport.close()
    stored = db.execute("SELECT count(*), count(DISTINCT event_id) FROM package_detections").fetchone()
    assert stored == (len(sent), len(set(sent)))
    # The replaced streams ended cleanly (half-closed by the edge, OK from the centre).
    wait_until(lambda: _streams_ended("OK") - closed_ok >= 2, 10, "replaced streams ended OK")


def test_a_batch_not_acknowledged_in_time_is_abandoned_and_the_centre_stops_retrying_it(
    grpc_server, grpc_token, db, database_url
):
    transport = GrpcTransport(f"127.0.0.1:{grpc_server.port}", grpc_token)
    events = [Outgoing.of(e) for e in EventFactory("FAC-002", seed=32).package(2)]
    database = urlsplit(database_url).path.lstrip("/")
    name = sql.Identifier(database)
    admin_db = psycopg.connect(urlsplit(database_url)._replace(path="/postgres").geturl(), autocommit=True)
    ended = _streams_ended()
    admin_db.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(name))
    try:
        admin_db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> %s",
            (database, db.info.backend_pid),
        )
        with pytest.raises(TransportError, match="no acknowledgement"):
            transport.send(events, timeout_s=1.0)
        # The call had 300 s of deadline and the server a 60 s cap: it ends now because it was cancelled.
        wait_until(lambda: _streams_ended() > ended, 5, "the abandoned stream's handler ended")
    finally:
        admin_db.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(name))
        admin_db.close()
    try:
        delivery = transport.send(events, timeout_s=20)  # the relay's replay once the database is back
    finally:
        transport.close()
    assert len(delivery.acked) == len(events) and transport.connects == 2
    assert db.execute("SELECT count(*) FROM package_detections").fetchone()[0] == len(events)


def test_the_stream_deadline_is_configured_in_the_transport_section_and_leaves_room_for_a_batch(tmp_path):
    def config(deadline: float) -> Path:
        file = tmp_path / "edge.yaml"
        file.write_text(
            "facility: F\ncameras: [{id: c1, source: 'synthetic://'}]\n"
            f"transport: {{kind: grpc, grpc_address: '127.0.0.1:1', timeout_s: 5, grpc_stream_deadline_s: {deadline}}}\n"
        )
        return file

    transport = make_transport(load_config(config(120), PlatformSettings.load()), "token")
    assert isinstance(transport, GrpcTransport) and transport.stream_deadline_s == 120
    with pytest.raises(EdgeConfigError, match=r"grpc_stream_deadline_s \(8\) must be at least twice"):
        load_config(config(8), PlatformSettings.load())
