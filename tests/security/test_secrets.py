"""Secrets come only from the environment and never reach a log line or a command's output.

Every long-running service and the everyday commands run with known secret values in
``WV_GRPC_TOKEN``, ``WV_SAP_PASSWORD``, ``WV_SAP_CLIENT_SECRET``, ``WV_SALESFORCE_CLIENT_SECRET``
and a password inside ``WV_DATABASE_URL``, at DEBUG, in both log formats, through successes and
failures (refused calls, bad configuration, unreachable database); their whole output is scanned.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import grpc
import pytest

from bench.fixtures.events import EventFactory, detection_batch
from bench.reliability.pipeline import EdgeNode, Endpoints, ingest_node, prepare_model
from contract.proto import warehouse_vision_pb2_grpc as pb_grpc

pytestmark = pytest.mark.timeout(240)

SECRETS = {
    "WV_GRPC_TOKEN": "tok-SEKRIT-1a2b3c",
    "WV_SAP_PASSWORD": "sap-PW-SEKRIT-4d5e",
    "WV_SAP_CLIENT_SECRET": "sap-CS-SEKRIT-6f7a",
    "WV_SALESFORCE_CLIENT_SECRET": "sf-CS-SEKRIT-8b9c",
}
DB_PASSWORD = "db-PW-SEKRIT-0d1e"


def _with_password(database_url: str, password: str = DB_PASSWORD) -> str:
    """The URL with a password (the local server uses trust authentication and ignores it)."""
    parts = urlsplit(database_url)
    return parts._replace(
        netloc=f"{parts.username or 'postgres'}:{password}@{parts.hostname}:{parts.port or 5432}"
    ).geturl()


def _leaks(text: str) -> list[str]:
    return [name for name, value in {**SECRETS, "db password": DB_PASSWORD}.items() if value in text]


@pytest.fixture
def secret_env(database_url: str, kafka_bootstrap: str, redis_url: str, topic_prefix: str) -> dict[str, str]:
    return {
        **SECRETS,
        "WV_DATABASE_URL": _with_password(database_url),
        "WV_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "WV_KAFKA_TOPIC_PREFIX": topic_prefix,
        "WV_REDIS_URL": redis_url,
        "WV_SAP_USERNAME": "wv-user",
        "WV_SAP_BASE_URL": "https://sap.example.invalid/odata",
        "WV_LOG_LEVEL": "DEBUG",
    }


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_services_never_log_their_secrets(serve, secret_env, log_format, tmp_path, db, database_url):
    env = {**secret_env, "WV_LOG_FORMAT": log_format}
    served = serve(**env)
    stub = pb_grpc.WarehouseVisionServiceStub(grpc.insecure_channel(served.address))
    batch = detection_batch(EventFactory("FAC-001", seed=51).package(2))
    for metadata in (
        [("authorization", f"Bearer {SECRETS['WV_GRPC_TOKEN']}")],
        [("authorization", "Bearer x")],
    ):
        try:
            list(stub.StreamDetectionEvents(iter([batch]), metadata=metadata, timeout=10))
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAUTHENTICATED

    endpoints = Endpoints(database_url, env["WV_KAFKA_BOOTSTRAP"], None, env["WV_KAFKA_TOPIC_PREFIX"])
    edge = EdgeNode(
        tmp_path / "edge",
        "FAC-001",
        endpoints,
        model_dir=prepare_model(tmp_path / "model"),
        cameras=["synthetic://seed=31&fps=10", f"rtsp://admin:{SECRETS['WV_SAP_PASSWORD']}@127.0.0.1:1/cam"],
        transport={"kind": "grpc", "grpc_address": served.address},
        env={k: v for k, v in env.items() if k != "WV_KAFKA_TOPIC_PREFIX"},
    )
    ingest = ingest_node(tmp_path / "ingest", endpoints, env=env)
    try:
        ingest.start()
        edge.start(wait_events=20)
        edge.wait_drained()
        assert edge.process.stop() == 0
        assert ingest.process.stop() == 0
    finally:
        edge.process.kill()
        ingest.process.kill()
    assert served.process.stop() == 0
    for process in (served.process, edge.process, ingest.process):
        text = process.log_text()
        assert text.strip(), process.name
        assert not _leaks(text), (process.name, _leaks(text))


def test_commands_and_configuration_errors_never_print_secrets(run_wv, secret_env, database_url):
    unreachable = {
        **secret_env,
        "WV_DATABASE_URL": _with_password(database_url).replace(
            f":{urlsplit(database_url).port or 5432}/", ":1/"
        ),
    }
    runs = [
        (["db", "status"], secret_env),
        (["services", "status"], secret_env),
        (["model", "list"], secret_env),
        (["realtime", "rules", "--once"], secret_env),
        (["model", "list"], unreachable),
        (["db", "status"], {**secret_env, "WV_METRICS_PORT": "not-a-port"}),
        (["db", "status"], {**secret_env, "WV_DATABASE_URL": f"mysql://root:{DB_PASSWORD}@db.example/wv"}),
        (["db", "status"], {**secret_env, "WV_REDIS_URL": f"http://:{DB_PASSWORD}@cache.example/0"}),
        (["model", "list"], {**secret_env, "WV_LOG_FORMAT": "json"}),
    ]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda r: run_wv(*r[0], env=r[1]), runs))
    for (args, _), result in zip(runs, results, strict=True):
        output = result.stdout + result.stderr
        assert "Traceback" not in output, output[-1500:]
        assert not _leaks(output), (args, _leaks(output), output[-1500:])
    assert results[5].returncode == 2 and "WV_METRICS_PORT" in results[5].stderr
    assert results[6].returncode == 2 and "WV_DATABASE_URL" in results[6].stderr
    assert results[7].returncode == 2 and "WV_REDIS_URL" in results[7].stderr
