"""An edge anomaly flag's one path: inside its event on wv.detections, stored with the event.

The broker carries it once (in the event's batch, nothing on wv.anomalies), ``anomaly_flags``
holds it once, and a replay of the same message (an edge re-sending what it saw no
acknowledgement for) adds nothing: that idempotency is the only deduplication left.
"""

from __future__ import annotations

import time

import pytest

from bench.fixtures.events import EventFactory
from bench.reliability.pipeline import committed_offsets
from contract.proto import warehouse_vision_pb2 as pb
from edge.decisions.events import anomaly
from edge.publish.kafka import KafkaTransport
from edge.publish.wire import Outgoing
from realtime import kafka

pytestmark = pytest.mark.timeout(90)


def _committed(config) -> int:
    return sum(committed_offsets(config.bootstrap, config.group_id, config.detections_topic)[0].values())


def test_an_edge_flag_rides_once_inside_its_event_and_is_stored_once(
    ingest_config, ingest_worker, topic_prefix, topic_reader, wait_for, scalar
):
    events = EventFactory("FAC-001", seed=71).package(3, condition="crushed")
    decision = events[-1]
    decision.anomalies.append(
        anomaly(decision, "damaged", pb.SEVERITY_CRITICAL, 0.93, {"p_crushed": 0.93}, time.time())
    )
    notifications = f"{topic_prefix}anomalies"  # exists in a deployment (`wv realtime rules` creates it)
    kafka.ensure_topics(ingest_config.bootstrap, [notifications], partitions=1)
    transport = KafkaTransport(ingest_config.bootstrap, "FAC-001", topic_prefix)
    try:
        transport.send([Outgoing.of(e) for e in events], 10.0)
        with ingest_worker("flags"):
            wait_for(lambda: scalar("SELECT count(*) FROM package_detections") == len(events))
            wait_for(lambda: _committed(ingest_config) == 1)
            assert scalar("SELECT count(*) FROM anomaly_flags") == 1
            transport.send([Outgoing.of(decision)], 10.0)  # the same event again: a replay
            wait_for(lambda: _committed(ingest_config) == 2)
    finally:
        transport.close()

    row = scalar(
        "SELECT count(*) FROM anomaly_flags WHERE event_id = %s AND kind = 'damaged'", decision.event_id
    )
    assert row == 1 and scalar("SELECT count(*) FROM anomaly_flags") == 1
    carried = topic_reader(ingest_config.detections_topic, 2)
    flags = [f for r in carried for e in pb.DetectionBatch.FromString(r.value).events for f in e.anomalies]
    assert len(carried) == 2 and len(flags) == 2  # one per message: the original and its replay
    assert topic_reader(notifications, 1, timeout_s=2.0) == []  # nothing sent beside it
