"""Streaming a simulated day: one ``wv edge run`` process per facility, its cameras in one config.

Each process streams its cameras' bursts (finite, unpaced synthetic sources, ``every`` policy so
no frame is dropped), publishes to the broker and exits once every event is acknowledged. The
hot-swap settings are the production mechanism with demo-sized numbers: a short shadow run, and
an agreement floor of 0.5 because a model retrained for drift is expected to disagree with the
old one exactly where the old one was wrong (the human approval is the quality gate; the floor
still stops a broken model). The latency bound is loose because the demo shares a small CPU. The
straggler fallback is the shipped `models/fallback` (copied into the demo's store) with a
demo-sized deadline: it answers the batches the primary stalls on while the CPU is busy (other
edges, Dagster runs), and the primary's late result supersedes those detections and the evidence of
tracks not decided yet, so the decisions the story measures stay the production model's wherever
it answered at all. The summary reports the fallback's share and latency.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import yaml

from wv.demo.environment import DemoEnvironment, Process
from wv.demo.scenario import CameraDay

HOTSWAP = {
    "poll_s": 0.5,
    "shadow_frames": 8,
    "shadow_every": 1,
    "min_agreement": 0.5,
    "max_latency_ratio": 3.0,
}
DEMO_BUDGETS = {"fallback": True, "latency_ms": 1000.0, "inference_deadline_ms": 150.0}
"""A batch-of-1 takes the primary 15–30 ms here; 150 ms means it stalled (a CPU busy elsewhere)."""


def edge_config(env: DemoEnvironment, facility: str, bursts: list[CameraDay]) -> dict[str, Any]:
    """The facility's edge.yaml for one day (everything not named here comes from the WV_ settings)."""
    return {
        "facility": facility,
        "cameras": [{"id": b.camera, "source": b.uri, "policy": "every", "queue_size": 2} for b in bursts],
        "engine": {"name": "onnxruntime", "precision": "int8", "threads": 1},
        "model": {"models_dir": str(env.models_dir), "fallback": str(env.models_dir / "fallback")},
        "budgets": DEMO_BUDGETS,
        "hotswap": HOTSWAP,
        "outbox": {"path": str(env.root / "edge" / facility / "outbox"), "sync": False},
        "transport": {"kind": "kafka"},
        "state_dir": str(env.root),
    }


def model_status(env: DemoEnvironment, facility: str) -> dict[str, Any] | None:
    """The edge's own report of its models (``<demo>/edge/<facility>/model_status.json``)."""
    path = env.root / "edge" / facility / "model_status.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@dataclass
class EdgeRun:
    facility: str
    process: Process
    config: Path
    started: float = field(default_factory=time.monotonic)
    stats: dict[str, Any] = field(default_factory=dict)
    """The edge's counters from its 'edge service stopped' log line."""

    def finish(self, timeout: float) -> dict[str, Any]:
        code = self.process.wait(timeout)
        self.stats = stopped_line(self.process.log_path)
        if code != 0:
            raise RuntimeError(
                f"`wv edge run` for {self.facility} exited with {code}; log tail:\n{self.process.tail()}"
            )
        return self.stats


def stopped_line(log: Path) -> dict[str, Any]:
    """The last 'edge service stopped' record of a JSON-lines edge log (empty when absent)."""
    found: dict[str, Any] = {}
    for line in log.read_text(errors="replace").splitlines():
        if '"edge service stopped"' in line:
            try:
                found = json.loads(line)
            except ValueError:
                continue
    return found


def start_day(env: DemoEnvironment, day: date, plan: dict[str, list[CameraDay]]) -> list[EdgeRun]:
    """Write each facility's edge.yaml for ``day`` and start its edge process."""
    runs = []
    for facility, bursts in plan.items():
        path = env.root / "edge" / facility / f"edge-{day.isoformat()}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(edge_config(env, facility, bursts), sort_keys=False))
        process = env.start(f"edge-{facility}-{day.isoformat()}", "edge", "run", "--config", str(path))
        runs.append(EdgeRun(facility, process, path))
    return runs


def events_published(stats: dict[str, Any]) -> int:
    return int(stats.get("events_detection", 0)) + int(stats.get("events_decision", 0))


def stored_events(conn: psycopg.Connection[Any], facility: str, start: datetime, end: datetime) -> int:
    row = conn.execute(
        "SELECT count(*) FROM package_detections WHERE facility_id = %s AND event_time >= %s AND event_time < %s",
        (facility, start, end),
    ).fetchone()
    return int(row[0]) if row else 0


def wait_for_ingest(
    env: DemoEnvironment, day: date, expected: dict[str, int], timeout: float = 180.0
) -> dict[str, int]:
    """Wait until the database holds every event the edges published for ``day``; returns the counts."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    end = start + timedelta(days=1)
    deadline = time.monotonic() + timeout
    with psycopg.connect(env.database_url, autocommit=True) as conn:
        while True:
            counts = {f: stored_events(conn, f, start, end) for f in expected}
            if all(counts[f] >= n for f, n in expected.items()) or time.monotonic() > deadline:
                return counts
            time.sleep(1.0)
