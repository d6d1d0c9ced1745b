"""Network exposure: with default settings every process listens on the loopback interface only —
the Prometheus endpoints of the edge, ingest, window and gRPC processes, the gRPC service, and the
Dagster webserver with the code server it spawns — and ``WV_METRICS_HOST``/``WV_DAGSTER_HOST``
open them wider only when set. Checked on the listening sockets of each process tree (/proc).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from bench.reliability.faults import wait_until
from bench.reliability.pipeline import EdgeNode, Endpoints, ServiceNode, ingest_node, prepare_model
from orchestration.cli import services
from wv.services.base import free_port
from wv.settings import PlatformSettings

from .conftest import TOKEN, listening, loopback

pytestmark = pytest.mark.timeout(240)


def _sockets_up(pid: int, port: int) -> set[tuple[str, int]]:
    found: set[tuple[str, int]] = set()

    def bound() -> bool:
        found.clear()
        found.update(listening(pid))
        return any(p == port for _, p in found)

    wait_until(bound, 120, f"a socket on port {port}", 0.5)
    return found


def test_services_and_their_metrics_listen_on_loopback_unless_configured(
    serve, db, database_url, kafka_bootstrap, redis_url, topic_prefix, tmp_path
):
    endpoints = Endpoints(database_url, kafka_bootstrap, redis_url, topic_prefix)
    endpoints.ensure_topics()
    ingest = ingest_node(tmp_path / "ingest", endpoints)
    windows = ServiceNode("windows", tmp_path / "windows", endpoints, ["realtime", "windows"])
    edge = EdgeNode(
        tmp_path / "edge",
        "FAC-001",
        endpoints,
        model_dir=prepare_model(tmp_path / "model"),
        cameras=["synthetic://seed=3&fps=5"],
    )
    nodes = [
        (ingest.process, ingest.metrics_port),
        (windows.process, windows.metrics_port),
        (edge.process, edge.metrics_port),
    ]
    try:
        for process, _ in nodes:
            process.start()
        served = serve(WV_GRPC_TOKEN=TOKEN)
        open_metrics = serve(WV_GRPC_TOKEN=TOKEN, WV_METRICS_HOST="0.0.0.0")
        nodes += [(served.process, served.metrics_port), (open_metrics.process, open_metrics.metrics_port)]
        found = {
            process.name + str(i): _sockets_up(process.pid, port) for i, (process, port) in enumerate(nodes)
        }
    finally:
        for process, _ in nodes:
            process.stop(15)
    *defaults, (_, wide) = found.items()
    for name, sockets in defaults:
        assert sockets and all(loopback(address) for address, _ in sockets), (name, sockets)
    assert ("0.0.0.0", open_metrics.metrics_port) in wide  # configured otherwise: honoured
    assert int(served.address.rsplit(":", 1)[1]) in {p for _, p in dict(defaults)["serve3"]}


def test_dagster_webserver_and_its_code_server_listen_on_loopback_unless_configured(tmp_path: Path):
    """``wv ui``'s webserver command line, on a minimal code location (ours takes minutes to load
    here; the bind address does not depend on what the location defines)."""
    (tmp_path / "defs.py").write_text("import dagster as dg\n\ndefs = dg.Definitions()\n")
    (tmp_path / "workspace.yaml").write_text("load_from:\n  - python_file: defs.py\n")
    port = free_port()
    (webserver,) = (s for s in services(PlatformSettings.load(dagster_port=port)) if s.name == "webserver")
    argv = [*webserver.argv[: webserver.argv.index("-w")], "-w", str(tmp_path / "workspace.yaml")]
    assert argv[argv.index("-h") + 1] == "127.0.0.1"
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    with (tmp_path / "webserver.log").open("wb") as log:
        process = subprocess.Popen(
            argv, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        sockets = _sockets_up(process.pid, port)
    finally:
        os.killpg(process.pid, 15)
        process.wait(60)
    assert all(loopback(address) for address, _ in sockets), sockets
    (wide,) = (
        s
        for s in services(PlatformSettings.load(dagster_port=port, dagster_host="0.0.0.0"))
        if s.name == "webserver"
    )
    assert wide.argv[wide.argv.index("-h") + 1] == "0.0.0.0"
