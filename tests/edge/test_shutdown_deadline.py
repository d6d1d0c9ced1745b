"""`wv edge run` stops within `shutdown.timeout_s` even when a component blocks: here the broker
is frozen (connections accepted, nothing answered), so the relay hangs in its send. The process
exits at the deadline with code 4, and every unacknowledged event stays in the outbox."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from bench.reliability.pipeline import metric_value, scrape
from edge.outbox.store import Outbox
from wv.services.base import free_port

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 3.0


@pytest.mark.timeout(120)
def test_sigterm_stops_an_edge_whose_relay_is_stuck_within_the_deadline_keeping_its_events(
    tmp_path, private_broker, edge_model
):
    private_broker.start()
    private_broker.freeze()
    port = free_port()
    outbox = tmp_path / "outbox"
    config = {
        "facility": "FAC-STOP",
        "cameras": [{"id": "cam-1", "source": "synthetic://seed=64&fps=15"}],
        "engine": {"name": "onnxruntime", "precision": "int8", "threads": 1},
        "model": {"version": str(edge_model), "fallback": None},
        "decisions": {"detection_sample_rate": 1.0},
        "outbox": {"path": str(outbox), "sync": False},
        "transport": {"kafka_bootstrap": private_broker.bootstrap, "topic_prefix": "stop.", "timeout_s": 60},
        "watchdog": {"stall_s": 120},  # the stuck relay is the stop's problem here, not the watchdog's
        "shutdown": {"timeout_s": TIMEOUT_S},
        "metrics": {"port": port},
        "redis_url": None,
        "state_dir": str(tmp_path / "state"),
    }
    (tmp_path / "edge.yaml").write_text(yaml.safe_dump(config))
    log = tmp_path / "edge.log"
    with log.open("wb") as out:
        edge = subprocess.Popen(
            [sys.executable, "-c", "from wv.cli import main; main()", "edge", "run", "--config", "edge.yaml"],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "WV_STATE_DIR": str(tmp_path / "state")},
        )
    try:
        deadline = time.monotonic() + 60
        while metric_value(scrape(port), "wv_edge_events_total") < 5:
            assert edge.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "no events written"
            time.sleep(0.2)

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
    kept = Outbox(outbox, sync=False)
    try:
        assert left >= 5 and len(kept) == left  # the next start replays every one of them
    finally:
        kept.close()
