"""gRPC authentication of ``wv realtime serve`` as deployed (configured by ``WV_*`` variables):
a token is mandatory, mTLS admits only clients with a certificate of the configured CA, every
near-miss of the token is UNAUTHENTICATED and writes nothing, and an edge with a wrong token —
or without its client certificate under mTLS — keeps its events until it is given the right
one; then they all arrive, once.

(tests/realtime/service covers the server API in-process: missing/wrong token, health, mTLS.)
"""

from __future__ import annotations

from collections.abc import Callable

import grpc
import psycopg
import pytest

from bench.fixtures.events import EventFactory, detection_batch
from bench.reliability.faults import wait_until
from bench.reliability.pipeline import EdgeNode, Endpoints, Ledger, prepare_model
from contract.proto import warehouse_vision_pb2 as pb
from contract.proto import warehouse_vision_pb2_grpc as pb_grpc

from .conftest import TOKEN, Pki, Served

pytestmark = pytest.mark.timeout(180)

NEAR_MISSES = [
    [],
    [("authorization", "Bearer wrong")],
    [("authorization", f"Bearer {TOKEN[:-1]}")],
    [("authorization", f"Bearer {TOKEN}x")],
    [("authorization", f"Bearer {TOKEN.upper()}")],
    [("authorization", f"bearer{TOKEN}")],
    [("authorization", f"Bearer  {TOKEN}")],
    [("authorization", TOKEN)],
    [("authorization", f"Basic {TOKEN}")],
    [("authorization", "Bearer ")],
    [("x-authorization", f"Bearer {TOKEN}")],
    [("authorization", "Bearer wrong"), ("authorization", f"Bearer {TOKEN}")],
]


def _counts(database_url: str) -> tuple[int, int]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT (SELECT count(*) FROM package_detections), (SELECT count(*) FROM dead_letters)"
        ).fetchone()
    assert rows is not None
    return int(rows[0]), int(rows[1])


def _credentials(pki: Pki, client: str | None) -> grpc.ChannelCredentials:
    if client is None:
        return grpc.ssl_channel_credentials(pki.ca.read_bytes())
    cert, key = (pki.client_cert, pki.client_key) if client == "trusted" else (pki.rogue_cert, pki.rogue_key)
    return grpc.ssl_channel_credentials(pki.ca.read_bytes(), key.read_bytes(), cert.read_bytes())


def _serve_mtls(serve: Callable[..., Served], pki: Pki) -> Served:
    """The centre with the token and mTLS: clients must present a certificate signed by the CA."""
    return serve(
        probe_credentials=_credentials(pki, "trusted"),
        WV_GRPC_TOKEN=TOKEN,
        WV_GRPC_TLS_CERT=str(pki.server_cert),
        WV_GRPC_TLS_KEY=str(pki.server_key),
        WV_GRPC_TLS_CLIENT_CA=str(pki.ca),
    )


def _calls(stub: pb_grpc.WarehouseVisionServiceStub, metadata: list[tuple[str, str]]) -> list:
    batch = detection_batch(EventFactory("FAC-001", seed=41).package(2))
    return [
        lambda: list(stub.StreamDetectionEvents(iter([batch]), metadata=metadata, timeout=10)),
        lambda: stub.QueryPackageHistory(pb.PackageID(package_id="PKG-1"), metadata=metadata, timeout=10),
        lambda: stub.GetAnomalyReport(
            pb.AnomalyReportRequest(facility_id="FAC-001"), metadata=metadata, timeout=10
        ),
    ]


def test_serve_refuses_to_start_without_a_token_or_with_half_a_tls_configuration(run_wv, database_url, pki):
    missing = run_wv("realtime", "serve", env={"WV_DATABASE_URL": database_url})
    assert missing.returncode == 2 and "WV_GRPC_TOKEN" in missing.stderr
    half = run_wv(
        "realtime",
        "serve",
        env={
            "WV_DATABASE_URL": database_url,
            "WV_GRPC_TOKEN": TOKEN,
            "WV_GRPC_TLS_CERT": str(pki.server_cert),
        },
    )
    assert half.returncode == 2 and "WV_GRPC_TLS_KEY" in half.stderr
    assert "Traceback" not in missing.stderr + half.stderr


def test_mtls_admits_only_certified_clients_with_the_exact_token_and_nothing_else_writes(
    serve, pki, db, database_url
):
    served = _serve_mtls(serve, pki)
    good = [("authorization", f"Bearer {TOKEN}")]
    trusted = pb_grpc.WarehouseVisionServiceStub(
        grpc.secure_channel(served.address, _credentials(pki, "trusted"))
    )

    for metadata in NEAR_MISSES:
        for call in _calls(trusted, metadata):
            with pytest.raises(grpc.RpcError) as denied:
                call()
            assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED, metadata
    for client in (None, "rogue"):  # no client certificate, or one from another CA: no handshake
        stub = pb_grpc.WarehouseVisionServiceStub(
            grpc.secure_channel(served.address, _credentials(pki, client))
        )
        with pytest.raises(grpc.RpcError) as refused:
            _calls(stub, good)[1]()
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, client
    plaintext = pb_grpc.WarehouseVisionServiceStub(grpc.insecure_channel(served.address))
    with pytest.raises(grpc.RpcError) as refused:
        _calls(plaintext, good)[1]()
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert _counts(database_url) == (0, 0)  # nothing written by any refused call

    acks = _calls(trusted, good)[0]()
    assert len(acks) == 1 and acks[0].written == 3
    assert _counts(database_url) == (3, 0)
    assert TOKEN not in served.process.log_text()


def _refused_edge(edge: EdgeNode, database_url: str, refusal: str) -> int:
    """Start the edge, see its publishes refused with ``refusal`` and every event kept, stop it;
    returns how many events it holds."""
    edge.start(wait_events=40)
    wait_until(lambda: edge.metric("wv_edge_publish_failures_total") >= 2, 30, "refused publishes")
    assert edge.outbox_events() >= 40  # all kept
    assert _counts(database_url) == (0, 0)
    assert edge.process.stop() == 0
    assert refusal in edge.process.log_text()
    return edge.written()


def _deliver(edge: EdgeNode, database_url: str, wait_events: int) -> Ledger:
    """Start the edge again, let it drain its outbox and stop it: every event stored exactly once."""
    edge.start(wait_events=wait_events)
    edge.wait_drained()
    assert edge.process.stop() == 0
    ledger = Ledger.collect([edge.journal], database_url, ["FAC-001"])
    assert not ledger.lost and ledger.duplicated == 0 and not ledger.extra, ledger.summary()
    return ledger


def _grpc_edge(
    tmp_path, served, pki: Pki, database_url, kafka_bootstrap, topic_prefix, seed, token
) -> EdgeNode:
    """A real ``wv edge run`` publishing over TLS gRPC to ``served``, trusting the test CA."""
    return EdgeNode(
        tmp_path / "edge",
        "FAC-001",
        Endpoints(database_url, kafka_bootstrap, None, topic_prefix),
        model_dir=prepare_model(tmp_path / "model"),
        cameras=[f"synthetic://seed={seed}&fps=10"],
        transport={
            "kind": "grpc",
            "grpc_address": served.address,
            "grpc_tls_ca": str(pki.ca),
            "timeout_s": 2.0,
        },
        env={"WV_GRPC_TOKEN": token},
    )


def test_edge_with_a_wrong_token_keeps_its_events_until_it_has_the_right_one(
    serve, pki, db, database_url, tmp_path, kafka_bootstrap, topic_prefix
):
    served = serve(
        probe_credentials=grpc.ssl_channel_credentials(pki.ca.read_bytes()),
        WV_GRPC_TOKEN=TOKEN,
        WV_GRPC_TLS_CERT=str(pki.server_cert),
        WV_GRPC_TLS_KEY=str(pki.server_key),
    )
    edge = _grpc_edge(tmp_path, served, pki, database_url, kafka_bootstrap, topic_prefix, 29, "not-the-token")
    try:
        _refused_edge(edge, database_url, "UNAUTHENTICATED")

        assert edge.process.env is not None
        edge.process.env["WV_GRPC_TOKEN"] = TOKEN
        _deliver(edge, database_url, edge.written() + 20)
    finally:
        edge.process.kill()
    assert "not-the-token" not in edge.process.log_text() and TOKEN not in edge.process.log_text()


def test_edge_without_its_client_certificate_keeps_its_events_until_it_presents_one_under_mtls(
    serve, pki, db, database_url, tmp_path, kafka_bootstrap, topic_prefix
):
    served = _serve_mtls(serve, pki)
    # It verifies the centre but presents no certificate: the TLS handshake is refused.
    edge = _grpc_edge(tmp_path, served, pki, database_url, kafka_bootstrap, topic_prefix, 31, TOKEN)
    try:
        refused = _refused_edge(edge, database_url, "UNAVAILABLE")

        edge.write_config(
            transport={"grpc_tls_cert": str(pki.client_cert), "grpc_tls_key": str(pki.client_key)}
        )
        ledger = _deliver(edge, database_url, refused + 40)  # the replay and new events, over mTLS
    finally:
        edge.process.kill()
    assert len(ledger.owed) >= refused + 40 and ledger.dead_letters == 0
    key_lines = pki.client_key.read_text().splitlines()[1:-1]
    log_text = edge.process.log_text()
    assert TOKEN not in log_text and not any(line in log_text for line in key_lines)
