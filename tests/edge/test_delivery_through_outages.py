"""Delivery through outages: broker stopped and restarted mid-run, edge killed with SIGKILL.

Events are counted by event_id at a consumer: every event the edge wrote must arrive, none twice.
The private Tansu broker keeps its log in memory, so before stopping it the test freezes it
(SIGSTOP) and checks that the consumer already holds everything the broker acknowledged; only then
is it killed. Otherwise a message acknowledged by the old broker and not yet read would be lost by
the broker itself, which says nothing about the edge.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from contract.proto import warehouse_vision_pb2 as pb
from edge.outbox.store import Outbox
from edge.service import EdgeService
from wv.services.base import free_port

ROOT = Path(__file__).resolve().parents[2]
SOURCE = "synthetic://seed=21&speed=2"


def published(service: EdgeService) -> int:
    return service.relay.counters["delivered"]


def _settled(value, quiet_s: float = 1.0, limit_s: float = 10.0) -> None:
    """Until ``value()`` has not changed for ``quiet_s`` (a busy machine delays in-flight acks)."""
    deadline = time.monotonic() + limit_s
    last, since = value(), time.monotonic()
    while time.monotonic() - since < quiet_s and time.monotonic() < deadline:
        time.sleep(0.05)
        now = value()
        if now != last:
            last, since = now, time.monotonic()


def stop_broker_cleanly(broker, collector, service: EdgeService) -> None:
    """Freeze the broker; kill it only once the consumer holds everything it acknowledged."""
    for _ in range(50):
        broker.freeze()
        # Acknowledgements already on the wire reach the edge (a busy edge may take over a second).
        _settled(lambda: published(service), quiet_s=1.5)
        if len(set(collector.ids)) == published(service):
            broker.kill()
            return
        broker.thaw()
        collector.wait(lambda: len(set(collector.ids)) >= published(service), 2)
    raise AssertionError("the consumer never caught up with the broker")


@pytest.mark.timeout(120)
def test_broker_stopped_and_restarted_mid_run_delivers_every_event_once(edge_config, collect, private_broker):
    private_broker.start()
    cfg = edge_config(
        [{"id": "cam-1", "source": SOURCE, "policy": "latest"}],
        transport={
            "kafka_bootstrap": private_broker.bootstrap,
            "topic_prefix": "wv.",
            # Longer than a freeze (about 1.5 s): a send frozen mid-flight completes after the thaw
            # instead of timing out while the broker may hold it (that would be a legitimate
            # duplicate); short enough that a send hanging on the restarted broker is retried in time.
            "timeout_s": 3.0,
            "breaker_failures": 2,
            "breaker_reset_s": 0.5,
            "backoff_cap_s": 0.5,
        },
        decisions={"detection_sample_rate": 0.3},
    )
    first = collect(private_broker.bootstrap, "wv.detections")
    service = EdgeService(cfg)
    service.start()
    try:
        assert first.wait(lambda: len(first.events) >= 20, 30)
        stop_broker_cleanly(private_broker, first, service)
        first.close()  # it holds exactly what the old broker delivered
        before = len(service.outbox)
        assert first.wait(  # the edge keeps inferring with no broker, and notices it is gone
            lambda: len(service.outbox) > before + 5 and service.relay.counters["failures"] >= 1, 30
        )
        written_while_down = service.outbox.counters["written"]
        private_broker.start()  # same port, empty log
        second = collect(private_broker.bootstrap, "wv.detections")
        assert second.wait(
            lambda: len(service.outbox) == 0 and service.outbox.counters["written"] > written_while_down, 30
        )
    finally:
        service.shutdown()
    written = service.outbox.counters["written"]
    assert service.outbox_left == 0
    counts = lambda: (len(first.ids), len(second.ids), written)  # noqa: E731
    assert second.wait(lambda: len(first.ids) + len(second.ids) >= written, 20), counts()
    ids = first.ids + second.ids
    assert len(ids) == written  # none twice
    assert len(set(ids)) == written  # none lost
    assert service.outbox.counters["acked"] == written


def run_edge(config: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", "from wv.cli import main; main()", "edge", "run", "--config", str(config)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def metric(port: int, name: str) -> float:
    """A sample of the edge's Prometheus endpoint (0 while it is not up yet)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def outbox_ids(path: Path) -> set[str]:
    outbox = Outbox(path, sync=False)
    try:
        return {
            pb.DetectionEvent.FromString(e.payload).event_id
            for e in outbox.pending(100_000, max_bytes=1 << 40)
        }
    finally:
        outbox.close()


@pytest.mark.timeout(120)
def test_edge_killed_with_sigkill_replays_its_outbox_after_restart(
    tmp_path: Path, edge_model: Path, collect, private_broker
):
    outbox = tmp_path / "outbox"
    port = free_port()
    config = tmp_path / "edge.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "facility": "FAC-KILL",
                "cameras": [{"id": "cam-1", "source": SOURCE}],
                "engine": {"name": "onnxruntime", "precision": "int8", "threads": 1},
                "model": {"version": str(edge_model), "fallback": None},
                "transport": {"kafka_bootstrap": private_broker.bootstrap, "timeout_s": 1.0},
                "decisions": {"detection_sample_rate": 0.3},
                "outbox": {"path": str(outbox)},
                "metrics": {"port": port},
                "redis_url": None,
            }
        )
    )
    env = {**os.environ, "WV_STATE_DIR": str(tmp_path / "state")}
    edge = run_edge(config, env)  # the broker is not running yet: everything stays in the outbox
    try:
        deadline = time.monotonic() + 60
        while (
            time.monotonic() < deadline and edge.poll() is None and metric(port, "wv_edge_outbox_events") < 30
        ):
            time.sleep(0.5)
        assert edge.poll() is None, edge.stderr.read().decode() if edge.stderr else ""
    finally:
        edge.send_signal(signal.SIGKILL)
        edge.wait(10)
    stranded = outbox_ids(outbox)
    assert len(stranded) >= 30

    private_broker.start()
    collector = collect(private_broker.bootstrap, "wv.detections")
    edge = run_edge(config, env)
    try:
        assert collector.wait(lambda: stranded <= set(collector.ids), 60), "stranded events not replayed"
    finally:
        edge.send_signal(signal.SIGTERM)
        assert edge.wait(30) == 0
    left = outbox_ids(outbox)
    assert collector.wait(lambda: len(set(collector.ids)) == len(collector.ids) and not left, 10), left
    assert stranded <= set(collector.ids)
