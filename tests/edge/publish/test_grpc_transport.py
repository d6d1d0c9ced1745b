"""The gRPC transport against the real central service: acknowledged events are stored and leave
the outbox; a wrong token is refused and nothing is deleted."""

from __future__ import annotations

import time

import pytest

from contract.proto import warehouse_vision_pb2 as pb
from edge.decisions.events import FrameContext, ModelInfo, new_event
from edge.publish.base import TransportError
from edge.publish.grpc import GrpcTransport
from edge.publish.wire import Outgoing
from edge.service import EdgeService
from realtime.storage.facilities import ensure_cameras


@pytest.mark.timeout(120)
def test_events_streamed_over_grpc_are_stored_and_acknowledged(
    edge_config, grpc_server, grpc_token, db, settings
):
    facility = settings.facilities[0]
    ensure_cameras(db, {facility: ["cam-1"]})  # registered before its edge starts
    cfg = edge_config(
        [{"id": "cam-1", "source": "synthetic://seed=61&realtime=0&frames=120", "policy": "every"}],
        facility=facility,
        transport={"kind": "grpc", "grpc_address": f"127.0.0.1:{grpc_server.port}"},
        decisions={"detection_sample_rate": 0.1},
        budgets={"fallback": False},
    )
    service = EdgeService(cfg, grpc_token=grpc_token)
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


def test_a_wrong_token_is_refused_and_reported_as_not_acknowledged(grpc_server):
    ctx = FrameContext("FAC-001", "cam-1", 1, time.time(), ModelInfo("v1", "onnxruntime", "int8"))
    transport = GrpcTransport(f"127.0.0.1:{grpc_server.port}", token="wrong")
    try:
        with pytest.raises(TransportError, match="UNAUTHENTICATED"):
            transport.send([Outgoing.of(new_event(pb.EVENT_KIND_DETECTION, ctx, "t-1"))], timeout_s=5)
    finally:
        transport.close()
