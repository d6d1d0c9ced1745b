"""Fixtures of the security suite: a throwaway PKI, and ``wv`` processes run with a chosen
environment (nothing of the caller's ``WV_*`` leaks in) whose output is kept for inspection."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.reliability.faults import ManagedProcess, wait_until
from wv.services.base import free_port

ROOT = Path(__file__).resolve().parents[2]
WV = [sys.executable, "-c", "from wv.cli import main; main()"]
TOKEN = "wv-test-token-7f3c1e9a5b"


@dataclass(frozen=True)
class Pki:
    """PEM files: a CA with a server (127.0.0.1) and a client certificate, and a rogue CA's client."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path
    rogue_key: Path


def _issue(subject: str, key, issuer_key, issuer: x509.Name | None, *, ca: bool = False, ip: bool = False):
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ip:
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
        builder = builder.add_extension(san, critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert, key) -> tuple[Path, Path]:
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return path.with_suffix(".crt"), path.with_suffix(".key")


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca_key, rogue_ca_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _issue("wv-test-ca", ca_key, ca_key, None, ca=True)
    rogue_ca = _issue("wv-rogue-ca", rogue_ca_key, rogue_ca_key, None, ca=True)
    ca_file, _ = _write(directory / "ca", ca, ca_key)
    keys = {name: ec.generate_private_key(ec.SECP256R1()) for name in ("server", "client", "rogue")}
    server = _write(
        directory / "server", _issue("wv-server", keys["server"], ca_key, ca.subject, ip=True), keys["server"]
    )
    client = _write(
        directory / "client", _issue("wv-edge", keys["client"], ca_key, ca.subject), keys["client"]
    )
    rogue = _write(
        directory / "rogue", _issue("wv-edge", keys["rogue"], rogue_ca_key, rogue_ca.subject), keys["rogue"]
    )
    return Pki(ca_file, *server, *client, *rogue)


def wv_environment(state_dir: Path, **values: str) -> dict[str, str]:
    """A process environment with only these ``WV_*`` values (plus a private state folder)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WV_")}
    env.update({"WV_STATE_DIR": str(state_dir), "PYTHONUNBUFFERED": "1", **values})
    return env


@pytest.fixture
def run_wv(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``run_wv(*args, env={WV_...})``: run a ``wv`` command to its end; output captured."""

    def run(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*WV, *args],
            env=wv_environment(tmp_path / "state", **env),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


@dataclass
class Served:
    """A running ``wv realtime serve``."""

    process: ManagedProcess
    address: str
    metrics_port: int


def health(address: str, credentials: grpc.ChannelCredentials | None = None) -> bool:
    channel = grpc.secure_channel(address, credentials) if credentials else grpc.insecure_channel(address)
    try:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        return reply.status == health_pb2.HealthCheckResponse.SERVING
    except grpc.RpcError:
        return False
    finally:
        channel.close()


@pytest.fixture
def serve(
    tmp_path: Path, database_url: str, kafka_bootstrap: str, redis_url: str, topic_prefix: str
) -> Iterator[Callable[..., Served]]:
    """``serve(**WV_values)``: start ``wv realtime serve`` on a free port; stopped at the end."""
    started: list[ManagedProcess] = []

    def start(probe_credentials: grpc.ChannelCredentials | None = None, **values: str) -> Served:
        port, metrics_port = free_port(), free_port()
        env = {
            "WV_DATABASE_URL": database_url,
            "WV_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "WV_KAFKA_TOPIC_PREFIX": topic_prefix,
            "WV_REDIS_URL": redis_url,
            "WV_GRPC_ADDRESS": f"127.0.0.1:{port}",
            "WV_METRICS_PORT": str(metrics_port),
            **values,
        }
        process = ManagedProcess(
            "serve",
            [*WV, "realtime", "serve"],
            tmp_path / f"serve-{len(started)}.log",
            env=wv_environment(tmp_path / "state", **env),
            cwd=ROOT,
        )
        started.append(process)
        process.start()
        address = f"127.0.0.1:{port}"

        def up() -> bool:
            if not process.alive:
                raise RuntimeError(f"wv realtime serve exited:\n{process.log_text()[-3000:]}")
            return health(address, probe_credentials)

        wait_until(up, 60, "wv realtime serve healthy", 0.2)
        return Served(process, address, metrics_port)

    yield start
    for process in started:
        process.stop(15)


def _process_tree(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    return tree


def _address(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw[::-1]))
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))  # four little-endian words
    return str(ipaddress.IPv6Address(words))


def listening(root_pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket a process or any of its descendants listens on."""
    inodes: set[str] = set()
    for pid in _process_tree(root_pid):
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                host, port = fields[1].split(":")
                found.add((_address(host), int(port, 16)))
    return found


def loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1, an IPv6 socket bound to 127.0.0.1
    return (mapped or ip).is_loopback
