"""The leader's machine dies under load: the synchronous standby takes over, nothing is lost or doubled.

Real edges write through a broker to an ingest worker; the gRPC service answers from the same
cluster. The leader's Patroni and PostgreSQL are SIGKILLed together; ingest and the service
reconnect through the multi-host URL on their own. The dead member then rejoins as a standby
(pg_rewind), and a planned switchover under load follows. Counted by event_id at the end.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest

from bench.reliability.faults import wait_until
from bench.reliability.pipeline import ServiceNode, metric_value, wait_stored
from contract.proto import warehouse_vision_pb2 as pb
from realtime.service import client
from wv.services.base import free_port

FACILITY = "FAC-001"


def _report(address: str, token: str) -> pb.AnomalyReport | None:
    """The service's anomaly report for the facility, or None while it cannot reach the database."""
    with client.channel(address, token) as channel:
        try:
            now = datetime.now(UTC)
            request = pb.AnomalyReportRequest(facility_id=FACILITY)
            request.start.FromDatetime(now - timedelta(hours=1))
            request.end.FromDatetime(now + timedelta(hours=1))
            return client.stub(channel).GetAnomalyReport(request, timeout=5)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE:  # type: ignore[attr-defined]
                raise
            return None


def _rule_passes(rules: ServiceNode) -> float:
    return metric_value(rules.metrics(), "wv_rule_passes_total", outcome="ok")


@pytest.mark.timeout(300)
def test_leader_death_rejoin_and_switchover_under_load_lose_and_duplicate_nothing(
    cluster, pipeline, broker, endpoints_for, database_url, grpc_token
):
    endpoints = endpoints_for(broker)
    ingest = pipeline.ingest(endpoints)
    address = f"127.0.0.1:{free_port()}"
    service = pipeline.service("serve", endpoints, "realtime", "serve")
    service.process.env.update(WV_GRPC_ADDRESS=address, WV_GRPC_TOKEN=grpc_token)
    rules = pipeline.service("rules", endpoints, "realtime", "rules")
    rules.process.env.update(WV_RULES_INTERVAL_S="0.5")
    edge = pipeline.edge(FACILITY, endpoints, cameras=["synthetic://seed=5&fps=10"])
    service.start()
    rules.start()
    pipeline.start(wait_events=40)
    wait_until(
        lambda: len(wait_stored(pipeline.journals, database_url, [FACILITY], 0).stored), 30, "events stored"
    )
    assert _report(address, grpc_token) is not None

    failover = cluster.kill_leader()
    assert failover.promoted != failover.killed
    written = edge.written()
    wait_until(
        lambda: len(wait_stored(pipeline.journals, database_url, [FACILITY], 0).stored) >= written,
        60,
        "ingest writing on the new leader",
    )
    wait_until(lambda: _report(address, grpc_token) is not None, 30, "gRPC answering from the new leader")
    passes = _rule_passes(rules)
    wait_until(lambda: _rule_passes(rules) > passes, 30, "a rule pass on the new leader")

    cluster.rejoin()
    assert sorted(cluster.roles().values()) == ["leader", "sync_standby"]
    written = edge.written()
    cluster.switchover()
    wait_until(
        lambda: len(wait_stored(pipeline.journals, database_url, [FACILITY], 0).stored) >= written,
        60,
        "ingest writing after the switchover",
    )

    assert edge.process.stop() == 0
    ledger = wait_stored(pipeline.journals, database_url, [FACILITY], 90)
    assert not ledger.lost, ledger.summary()
    assert ledger.duplicated == 0 and not ledger.extra, ledger.summary()
    assert len(ledger.stored) > 200, ledger.summary()
    assert metric_value(ingest.metrics(), "wv_db_retries_total") > 0  # it did see the leader go
    assert ingest.process.alive and service.process.alive and rules.process.alive
