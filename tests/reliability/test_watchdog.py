"""An engine stuck in a call stalls the inference loop: the watchdog fails /healthz, the edge exits
with code 3, and after the supervisor's restart nothing is lost or duplicated (by event_id)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from bench.reliability.faults import wait_until
from bench.reliability.journaled_edge import STALL_MARKER
from bench.reliability.models import make_version
from bench.reliability.pipeline import wait_stored
from edge.watchdog import EXIT_STALLED

FACILITY = "FAC-003"
STALL_S = 2.0


def healthz(port: int) -> tuple[int, dict[str, object]] | None:
    """(HTTP status, body) of the edge's /healthz; None when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return None


@pytest.mark.timeout(150)
def test_a_stalled_inference_loop_fails_liveness_exits_3_and_the_restart_loses_nothing(
    pipeline, broker, endpoints_for, database_url, tmp_path, model_dir
):
    models = tmp_path / "models"
    version = make_version(models, "v1", model_dir)
    endpoints = endpoints_for(broker)
    pipeline.ingest(endpoints)
    edge = pipeline.edge(
        FACILITY,
        endpoints,
        cameras=["synthetic://seed=23&fps=10"],
        engine={"name": "wv-stall-injecting"},
        model={"version": str(version), "fallback": None},
        watchdog={"stall_s": STALL_S},
        shutdown={"timeout_s": 3},
    )
    pipeline.start(wait_events=30)
    assert healthz(edge.metrics_port) is not None
    status, body = healthz(edge.metrics_port)  # type: ignore[misc]
    assert status == 200 and body["status"] == "ok" and body["stalled"] == []

    (version / STALL_MARKER).touch()  # the next inference call never returns
    answers: list[tuple[int, dict[str, object]]] = []

    def exited() -> bool:
        if (answer := healthz(edge.metrics_port)) is not None:
            answers.append(answer)
        return not edge.process.alive

    wait_until(exited, STALL_S + 20, "the stalled edge to exit", 0.1)
    assert edge.process.returncode == EXIT_STALLED
    failing = [body for status, body in answers if status == 503]
    assert failing and failing[0]["stalled"] == ["inference"], answers[-3:]
    assert "watchdog: inference made no progress" in edge.process.log_text()

    (version / STALL_MARKER).unlink()  # what a supervisor does next: start it again
    edge.start(wait_events=edge.written() + 20)
    assert edge.process.stop() == 0
    ledger = wait_stored(pipeline.journals, database_url, [FACILITY], 60)
    assert not ledger.lost and ledger.duplicated == 0 and not ledger.extra, ledger.summary()
