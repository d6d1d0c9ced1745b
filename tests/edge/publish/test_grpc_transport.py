"""The gRPC transport against the real central service: acknowledged events are stored and leave
the outbox; a wrong token is refused and nothing is deleted."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from edge.decisions.events import FrameContext, ModelInfo, new_event
from edge.publish.base import TransportError
from edge.publish.grpc import GrpcTransport
from edge.service import EdgeService
from realtime.proto import warehouse_vision_pb2 as pb
from realtime.service.server import RunningServer, ServiceConfig, start_server

TOKEN = "edge-test-token"


@pytest.fixture
def centre(
    database_url: str, redis_url: str, kafka_bootstrap: str, topic_prefix: str
) -> Iterator[RunningServer]:
    running = start_server(
        ServiceConfig(
            address="127.0.0.1:0",
            token=TOKEN,
            database_url=database_url,
            max_workers=4,
            kafka_bootstrap=kafka_bootstrap,
            dead_letter_topic=f"{topic_prefix}dead-letter",
            redis_url=redis_url,
        )
    )
    yield running
    running.stop(grace_s=1)


@pytest.mark.timeout(120)
def test_events_streamed_over_grpc_are_stored_and_acknowledged(edge_config, centre, db, settings):
    facility = settings.facilities[0]
    cfg = edge_config(
        [{"id": "cam-1", "source": "synthetic://seed=61&realtime=0&frames=120", "policy": "every"}],
        facility=facility,
        transport={"kind": "grpc", "grpc_address": f"127.0.0.1:{centre.port}"},
        decisions={"detection_sample_rate": 0.1},
        budgets={"fallback": False},
    )
    service = EdgeService(cfg, grpc_token=TOKEN)
    service.start()
    assert service.wait_finished(90)
    service.shutdown()
    written = service.outbox.counters["written"]
    assert written > 0 and service.outbox_left == 0
    assert service.relay.counters["delivered"] == written and service.relay.counters["rejected"] == 0
    stored = db.execute(
        "SELECT count(DISTINCT event_id) FROM package_detections WHERE facility_id = %s", (facility,)
    )
    assert stored.fetchone()[0] == written


def test_a_wrong_token_is_refused_and_reported_as_not_acknowledged(centre):
    ctx = FrameContext("FAC-001", "cam-1", 1, time.time(), ModelInfo("v1", "onnxruntime", "int8"))
    transport = GrpcTransport(f"127.0.0.1:{centre.port}", token="wrong")
    try:
        with pytest.raises(TransportError, match="UNAUTHENTICATED"):
            transport.send([new_event(pb.EVENT_KIND_DETECTION, ctx, "t-1")], timeout_s=5)
    finally:
        transport.close()
