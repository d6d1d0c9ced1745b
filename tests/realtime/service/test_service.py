"""The gRPC WarehouseVisionService against the real database, broker and Redis."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import REGISTRY

from bench.fixtures.events import EventFactory, detection_batch
from contract.events import anomaly_flag, from_timestamp, to_timestamp
from contract.proto import warehouse_vision_pb2 as pb
from realtime.service import client
from realtime.service.server import SERVICE_NAME, RunningServer, ServiceConfig, start_server
from realtime.windows.aggregator import WindowAggregator
from realtime.windows.recompute import windows_from_database

pytestmark = pytest.mark.timeout(60)
TOKEN = "s3cret-test-token"


@pytest.fixture
def grpc_token() -> str:
    return TOKEN


def _stub(server: RunningServer, token: str | None = TOKEN):
    return client.stub(client.channel(f"127.0.0.1:{server.port}", token))


def test_stream_acknowledges_each_batch_after_it_is_stored(grpc_server, db, scalar):
    factory = EventFactory("FAC-003", seed=21)
    first = factory.package(3)
    second = factory.package(2)
    bad = factory.detection(detection_confidence=-0.1)
    batches = [
        detection_batch(first, "b1"),
        detection_batch([*second, bad], "b2"),
        detection_batch(first, "b1-replay"),
    ]
    acks = []
    for ack in _stub(grpc_server).StreamDetectionEvents(iter(batches), timeout=20):
        # by the time an ack arrives, its events are committed
        stored = scalar(
            "SELECT count(*) FROM package_detections WHERE event_id = ANY(%s)",
            list(ack.acknowledged_event_ids),
        )
        acks.append((ack, stored))
    assert [a.batch_id for a, _ in acks] == ["b1", "b2", "b1-replay"]
    assert [(a.written, a.duplicates, stored) for a, stored in acks] == [(4, 0, 4), (3, 0, 3), (0, 4, 4)]
    assert list(acks[0][0].acknowledged_event_ids) == [e.event_id for e in first]
    assert [(r.event_id, r.reason) for r in acks[1][0].rejected] == [
        (bad.event_id, "invalid_value: detection_confidence")
    ]
    assert scalar("SELECT count(*) FROM package_detections") == 7
    assert scalar("SELECT count(*) FROM quality_assessments") == 2
    assert scalar("SELECT reason FROM dead_letters WHERE event_id = %s", bad.event_id).startswith(
        "invalid_value"
    )


def test_events_of_an_unregistered_camera_are_rejected_with_the_reason_and_write_no_row(
    grpc_server, db, scalar
):
    known = EventFactory("FAC-002", seed=27).package(1)
    stranger = EventFactory("FAC-002", seed=28, cameras=("cam-77",)).package(1)  # a detection + decision
    [ack] = _stub(grpc_server).StreamDetectionEvents(
        iter([detection_batch([*known, *stranger], "b")]), timeout=20
    )
    assert (ack.written, list(ack.acknowledged_event_ids)) == (2, [e.event_id for e in known])
    reason = "unknown_camera: cam-77 of facility FAC-002"
    assert [(r.event_id, r.reason) for r in ack.rejected] == [(e.event_id, reason) for e in stranger]
    ids = [e.event_id for e in stranger]
    assert scalar("SELECT count(*) FROM package_detections WHERE event_id = ANY(%s)", ids) == 0
    assert scalar("SELECT count(*) FROM quality_assessments WHERE event_id = ANY(%s)", ids) == 0
    letters = db.execute(
        "SELECT event_id, reason, source, raw FROM dead_letters ORDER BY source_item"
    ).fetchall()
    assert letters == [(e.event_id, reason, "grpc", e.SerializeToString()) for e in stranger]


def test_package_history_is_the_timeline_in_time_order(grpc_server, db):
    factory = EventFactory("FAC-001", seed=22)
    events = factory.package(3, condition="crushed")
    decision = events[-1]
    flag = anomaly_flag(
        kind="damaged",
        facility_id="FAC-001",
        flagged_at=from_timestamp(decision.event_time),
        event_id=decision.event_id,
    )
    decision.anomalies.append(flag)
    stub = _stub(grpc_server)
    list(stub.StreamDetectionEvents(iter([detection_batch(events)]), timeout=20))
    timeline = stub.QueryPackageHistory(pb.PackageID(package_id=decision.package_id), timeout=10)
    assert timeline.package_id == decision.package_id
    assert timeline.facility_id == "FAC-001" and timeline.sku == decision.sku
    kinds = [entry.WhichOneof("entry") for entry in timeline.entries]
    assert kinds == ["detection", "detection", "detection", "detection", "assessment", "anomaly"]
    times = [from_timestamp(entry.time) for entry in timeline.entries]
    assert times == sorted(times)
    assert [e.detection.event_id for e in timeline.entries[:4]] == [e.event_id for e in events]
    assessment = timeline.entries[4].assessment
    assert assessment.condition == pb.CONDITION_CRUSHED and assessment.event_id == decision.event_id
    assert timeline.entries[5].anomaly.anomaly_id == flag.anomaly_id
    assert timeline.entries[0].detection.timings.end_to_end_ms == pytest.approx(
        events[0].timings.end_to_end_ms
    )
    with pytest.raises(grpc.RpcError) as missing:
        stub.QueryPackageHistory(pb.PackageID(package_id="PKG-never-seen"), timeout=10)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


def test_anomaly_report_counts_by_kind_and_severity_and_lists_the_newest(grpc_server, db):
    start = datetime.now(UTC) - timedelta(minutes=30)
    factory = EventFactory("FAC-002", seed=23, start=start)
    specs = [("damaged", "warning")] * 3 + [("misplaced", "critical")] * 2 + [("damaged", "critical")]
    events = []
    for i, (kind, severity) in enumerate(specs):
        event = factory.decision()
        at = start + timedelta(minutes=i + 1)
        event.anomalies.append(
            anomaly_flag(kind=kind, severity=severity, facility_id="FAC-002", flagged_at=at)
        )
        events.append(event)
    other = EventFactory("FAC-001", seed=24).decision()
    other.anomalies.append(
        anomaly_flag(kind="damaged", facility_id="FAC-001", flagged_at=start + timedelta(minutes=2))
    )
    stub = _stub(grpc_server)
    list(stub.StreamDetectionEvents(iter([detection_batch([*events, other])]), timeout=20))
    request = pb.AnomalyReportRequest(
        facility_id="FAC-002", start=to_timestamp(start), end=to_timestamp(datetime.now(UTC)), max_flags=4
    )
    report = stub.GetAnomalyReport(request, timeout=10)
    assert report.total == 6
    assert {(c.kind, c.severity): c.count for c in report.counts} == {
        ("damaged", pb.SEVERITY_WARNING): 3,
        ("damaged", pb.SEVERITY_CRITICAL): 1,
        ("misplaced", pb.SEVERITY_CRITICAL): 2,
    }
    flagged = [from_timestamp(f.flagged_at) for f in report.flags]
    assert len(flagged) == 4 and flagged == sorted(flagged, reverse=True)
    assert flagged[0] == start + timedelta(minutes=len(specs))


def test_facility_live_is_read_from_the_windows_and_agrees_with_the_database(grpc_server, db, redis_client):
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=4)
    factory = EventFactory("FAC-001", seed=41, start=start, step=timedelta(seconds=4))
    events = []
    for i in range(40):
        package = factory.package(2, condition="torn" if i % 4 == 0 else "ok")
        if i % 10 == 0:
            decision = package[-1]
            decision.anomalies.append(
                anomaly_flag(
                    kind="damaged", facility_id="FAC-001", flagged_at=from_timestamp(decision.event_time)
                )
            )
        events += package
    stub = _stub(grpc_server)
    list(stub.StreamDetectionEvents(iter([detection_batch(events)]), timeout=20))  # fanned out to Redis
    aggregator = WindowAggregator(redis_client, block_ms=10)
    while aggregator.step(block_ms=10):
        pass

    live = stub.GetFacilityLive(pb.FacilityLiveRequest(facility_id="FAC-001", minutes=10), timeout=10)

    reference = windows_from_database(db, "FAC-001", from_timestamp(live.start), from_timestamp(live.end))
    assert [(from_timestamp(w.minute), w.packages, w.damaged, dict(w.anomalies)) for w in live.windows] == [
        (w.minute, w.counts.packages, w.counts.damaged, w.anomalies) for w in reference
    ]
    assert (live.packages, live.damaged, live.anomalies) == (40, 10, 4)
    assert live.damage_rate == pytest.approx(0.25)
    assert all(w.HasField("p99_end_to_end_ms") for w in live.windows)
    for bad in (pb.FacilityLiveRequest(), pb.FacilityLiveRequest(facility_id="FAC-001", minutes=361)):
        with pytest.raises(grpc.RpcError) as refused:
            stub.GetFacilityLive(bad, timeout=10)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def _handled(method: str, code: str) -> float:
    labels = {"method": f"/warehouse_vision.v1.WarehouseVisionService/{method}", "code": code}
    return REGISTRY.get_sample_value("wv_grpc_server_handling_seconds_count", labels) or 0.0


def test_calls_without_the_right_token_are_rejected_and_write_nothing(grpc_server, db, scalar):
    denied_before = _handled("QueryPackageHistory", "UNAUTHENTICATED")
    events = EventFactory("FAC-001", seed=25).package(2)
    for token in (None, "wrong-token"):
        stub = _stub(grpc_server, token)
        calls = [
            lambda s=stub: list(s.StreamDetectionEvents(iter([detection_batch(events)]), timeout=10)),
            lambda s=stub: s.QueryPackageHistory(pb.PackageID(package_id=events[0].package_id), timeout=10),
            lambda s=stub: s.GetAnomalyReport(pb.AnomalyReportRequest(facility_id="FAC-001"), timeout=10),
        ]
        for call in calls:
            with pytest.raises(grpc.RpcError) as denied:
                call()
            assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert scalar("SELECT count(*) FROM package_detections") == 0
    assert scalar("SELECT count(*) FROM dead_letters") == 0
    assert (
        _handled("QueryPackageHistory", "UNAUTHENTICATED") == denied_before + 2
    )  # metrics by method and code


def test_health_needs_no_token_and_reflection_lists_the_service(grpc_server):
    channel = client.channel(f"127.0.0.1:{grpc_server.port}", None)
    health = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=5
    )
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(
        client.channel(f"127.0.0.1:{grpc_server.port}", TOKEN)
    )
    answer = next(
        reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
    )
    assert SERVICE_NAME in {s.name for s in answer.list_services_response.service}


def test_a_query_blocked_past_its_deadline_ends_deadline_exceeded(grpc_server, db, database_url):
    with psycopg.connect(database_url) as blocker:
        blocker.execute("LOCK TABLE packages IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(grpc.RpcError) as late:
            _stub(grpc_server).QueryPackageHistory(pb.PackageID(package_id="PKG-x"), timeout=0.5)
        blocker.rollback()
    assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_oversized_messages_are_refused(grpc_server):
    huge = detection_batch(
        EventFactory("FAC-001", seed=26).detection(embedding=[0.1] * 600_000) for _ in range(8)
    )
    with pytest.raises(grpc.RpcError) as refused:
        list(_stub(grpc_server).StreamDetectionEvents(iter([huge]), timeout=10))
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def _certificates(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)

    def issue(name: str, issuer_key, issuer_name, key, *, ca: bool = False, ip: bool = False):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(issuer_name or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=1))
            .not_valid_after(now + timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ip:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        return builder.sign(issuer_key, hashes.SHA256())

    def write(name: str, cert, key) -> None:
        (directory / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (directory / f"{name}.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = issue("wv-test-ca", ca_key, None, ca_key, ca=True)
    write("ca", ca, ca_key)
    for name, ip in (("server", True), ("client", False)):
        key = ec.generate_private_key(ec.SECP256R1())
        write(name, issue(f"wv-{name}", ca_key, ca.subject, key, ip=ip), key)
    return {p.stem + p.suffix: p for p in directory.iterdir()}


def test_mutual_tls_admits_clients_with_a_certificate_and_the_token(tmp_path, database_url):
    files = _certificates(tmp_path)
    running = start_server(
        ServiceConfig(
            address="127.0.0.1:0",
            token=TOKEN,
            database_url=database_url,
            max_workers=2,
            tls_cert=files["server.crt"],
            tls_key=files["server.key"],
            tls_client_ca=files["ca.crt"],
        )
    )
    try:
        address = f"127.0.0.1:{running.port}"
        trusted = client.stub(
            client.channel(
                address,
                TOKEN,
                root_certificates=files["ca.crt"].read_bytes(),
                private_key=files["client.key"].read_bytes(),
                certificate_chain=files["client.crt"].read_bytes(),
            )
        )
        with pytest.raises(grpc.RpcError) as unknown:
            trusted.QueryPackageHistory(pb.PackageID(package_id="PKG-none"), timeout=10)
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND  # authenticated, answered
        anonymous = client.stub(
            client.channel(address, TOKEN, root_certificates=files["ca.crt"].read_bytes())
        )
        with pytest.raises(grpc.RpcError) as refused:
            anonymous.QueryPackageHistory(pb.PackageID(package_id="PKG-none"), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE  # no client certificate: no handshake
    finally:
        running.stop(grace_s=1)
