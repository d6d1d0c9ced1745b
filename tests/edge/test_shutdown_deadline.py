"""`wv edge run` stops within `shutdown.timeout_s` even when a component blocks: a frozen broker
(connections accepted, nothing answered) holds the relay in its send, so the process exits at the
deadline with code 4 and every unacknowledged event stays in the outbox; and a log output nobody
reads (issue 24's hang: every thread that logged, the stop path included, waited on the full pipe)
no longer holds anything up."""

from __future__ import annotations

import fcntl
import re
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
import yaml

from bench.reliability.pipeline import metric_value, scrape
from edge.outbox.store import Outbox
from wv.services.base import free_port

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 3.0
F_SETPIPE_SZ = 1031
PIPE_BYTES = 4096


def edge_yaml(tmp_path: Path, model: Path, bootstrap: str, port: int, **sections: object) -> None:
    config = {
        "facility": "FAC-STOP",
        "cameras": [{"id": "cam-1", "source": "synthetic://seed=64&fps=15"}],
        "engine": {"name": "onnxruntime", "precision": "int8", "threads": 1},
        "model": {"version": str(model), "fallback": None},
        "decisions": {"detection_sample_rate": 1.0},
        "outbox": {"path": str(tmp_path / "outbox"), "sync": False},
        "transport": {"kafka_bootstrap": bootstrap, "topic_prefix": "stop.", "timeout_s": 60},
        "watchdog": {
            "stall_s": 120
        },  # a stuck relay or output is the stop's problem here, not the watchdog's
        "shutdown": {"timeout_s": TIMEOUT_S},
        "metrics": {"port": port},
        "redis_url": None,
        "state_dir": str(tmp_path / "state"),
        **sections,
    }
    (tmp_path / "edge.yaml").write_text(yaml.safe_dump(config))


def start_edge(tmp_path: Path, out: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", "from wv.cli import main; main()", "edge", "run", "--config", "edge.yaml"],
        cwd=tmp_path,
        stdout=out,  # type: ignore[arg-type]
        stderr=subprocess.STDOUT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "WV_STATE_DIR": str(tmp_path / "state")},
    )


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


@pytest.mark.timeout(120)
def test_sigterm_stops_an_edge_whose_relay_is_stuck_within_the_deadline_keeping_its_events(
    tmp_path, private_broker, edge_model
):
    private_broker.start()
    private_broker.freeze()
    port = free_port()
    edge_yaml(tmp_path, edge_model, private_broker.bootstrap, port)
    log = tmp_path / "edge.log"
    with log.open("wb") as out:
        edge = start_edge(tmp_path, out)
    try:
        wait_for(
            lambda: edge.poll() is None and metric_value(scrape(port), "wv_edge_events_total") >= 5,
            60,
            "events",
        )

        signalled = time.monotonic()
        edge.send_signal(signal.SIGTERM)
        code = edge.wait(TIMEOUT_S + 10)
        took = time.monotonic() - signalled
    finally:
        if edge.poll() is None:
            edge.kill()
            edge.wait(10)

    text = log.read_text()
    assert code == 4, text
    assert took < TIMEOUT_S + 3, f"stopped after {took:.1f} s"
    assert "abandoned: outbox-relay" in text
    left = int(re.search(r"(\d+) left in the outbox", text).group(1))  # type: ignore[union-attr]
    kept = Outbox(tmp_path / "outbox", sync=False)
    try:
        assert left >= 5 and len(kept) == left  # the next start replays every one of them
    finally:
        kept.close()


@pytest.mark.timeout(120)
def test_sigterm_stops_an_edge_whose_log_output_nobody_reads(tmp_path, edge_model):
    port = free_port()
    edge_yaml(tmp_path, edge_model, f"127.0.0.1:{free_port()}", port)  # no broker: a warning a second
    edge = start_edge(tmp_path, subprocess.PIPE)
    assert edge.stdout is not None
    fcntl.fcntl(edge.stdout.fileno(), F_SETPIPE_SZ, PIPE_BYTES)  # never read: full after a few lines

    seen: list[int] = []

    def pipe_full() -> bool:
        """Nearly a pipe's worth waiting and no more coming in 1 s: the edge's writer is blocked."""
        assert edge.poll() is None
        waiting = bytearray(4)
        fcntl.ioctl(edge.stdout.fileno(), termios.FIONREAD, waiting)  # type: ignore[union-attr]
        seen.append(int.from_bytes(waiting, sys.byteorder))
        return len(seen) > 10 and seen[-1] >= PIPE_BYTES - 1024 and seen[-1] == seen[-11]

    try:
        wait_for(pipe_full, 60, "the edge's output pipe to fill")
        signalled = time.monotonic()
        edge.send_signal(signal.SIGTERM)
        code = edge.wait(TIMEOUT_S + 10)
        took = time.monotonic() - signalled
    finally:
        if edge.poll() is None:
            edge.kill()
            edge.wait(10)
    assert code in (0, 4) and took < TIMEOUT_S + 3, f"exit {code} after {took:.1f} s"
