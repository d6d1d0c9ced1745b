"""Dagster's storage fails over under the daemon and the webserver: they carry on by themselves.

The daemon and webserver run on the production ``dagster.yaml`` (storage URL from
``storage_env``: every Patroni member, ``target_session_attrs=read-write``) with a tiny code
location: a schedule every minute, a sensor every 2 s and a 20 s job. The leader dies while a
run launched through the webserver is in flight. Afterwards a sensor tick and a schedule tick succeed, the webserver
answers, and the run in flight ends in success: either it rode out the failover or, if its process
died with the storage, ``run_retries`` launched it again and the retry succeeded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.reliability.faults import ManagedProcess, wait_until
from orchestration.instance import prepare_instance
from orchestration.settings import OrchestrationSettings
from wv.services.base import free_port

HERE = Path(__file__).parent
BIN = Path(sys.executable).parent
LOCATION = "heartbeat"
SELECTOR = {"repositoryName": "__repository__", "repositoryLocationName": LOCATION}
TICKS = """query ($sensor: SensorSelector!, $schedule: ScheduleSelector!) {
  sensorOrError(sensorSelector: $sensor) { ... on Sensor { sensorState { ticks(limit: 50) { status timestamp } } } }
  scheduleOrError(scheduleSelector: $schedule) {
    ... on Schedule { scheduleState { ticks(limit: 10) { status timestamp } } } }
  runsOrError { ... on Runs { results { runId status startTime tags { key value } } } }
}"""


LAUNCH = """mutation ($selector: JobOrPipelineSelector!) {
  launchRun(executionParams: {selector: $selector, mode: "default"}) {
    __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } }
}"""


class Dagster:
    """The webserver and daemon of one instance; GraphQL through the webserver."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        workspace = home / "workspace.yaml"
        workspace.write_text(
            "load_from:\n  - python_file:\n"
            f"      relative_path: {HERE / 'heartbeat_location.py'}\n"
            f"      working_directory: {HERE}\n      location_name: {LOCATION}\n"
        )
        self.port = free_port()
        self.processes = [
            ManagedProcess("daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(workspace)], home / "daemon.log",
                           env=env),
            ManagedProcess("webserver", [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(self.port),
                                         "-w", str(workspace)], home / "webserver.log", env=env),
        ]  # fmt: skip

    def start(self) -> None:
        for process in self.processes:
            process.start()
        wait_until(lambda: self.query() is not None, 120, "the Dagster webserver", 0.5)

    def query(self) -> dict[str, Any] | None:
        """Ticks and runs, or None while the webserver (or its storage) does not answer."""
        variables = {"sensor": {**SELECTOR, "sensorName": "heartbeat_sensor"},
                     "schedule": {**SELECTOR, "scheduleName": "heartbeat_job_schedule"}}  # fmt: skip
        try:
            reply = httpx.post(
                f"http://127.0.0.1:{self.port}/graphql",
                json={"query": TICKS, "variables": variables},
                timeout=10,
            ).json()
        except (httpx.HTTPError, ValueError):
            return None
        data = reply.get("data") or {}
        if "sensorState" not in (data.get("sensorOrError") or {}):
            return None
        return data

    def launch(self) -> str:
        """Launch the heartbeat job through the webserver, as an operator would; its run id."""
        selector = {**SELECTOR, "jobName": "heartbeat_job"}
        reply = httpx.post(
            f"http://127.0.0.1:{self.port}/graphql",
            json={"query": LAUNCH, "variables": {"selector": selector}},
            timeout=30,
        ).json()
        launched = reply["data"]["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        return str(launched["run"]["runId"])

    def logs(self) -> str:
        """Each run's status and tags, then each process's log without the sensor's tick lines
        (they would push out what a failure needs: the run workers' events and errors)."""
        runs = "\n".join(f"{r['runId']} {r['status']} {r['tags']}" for r in _runs(self.query()))
        logs = [
            "\n".join(line for line in p.log_text().splitlines() if "heartbeat_sensor" not in line)
            for p in self.processes
        ]
        return f"=== runs\n{runs}\n" + "\n".join(
            f"=== {p.name}\n{log[-12000:]}" for p, log in zip(self.processes, logs, strict=True)
        )

    def stop(self) -> None:
        """Each process with its session (as `wv ui stop` does): the daemon's code servers too."""
        for process in self.processes:
            if process.alive and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
            process.stop(20)


def _ticks(data: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    state = data[f"{kind}OrError"][f"{kind}State"]
    return list(state["ticks"])


def _succeeded_since(data: dict[str, Any] | None, kind: str, since: float) -> bool:
    return data is not None and any(
        t["timestamp"] > since and t["status"] in ("SUCCESS", "SKIPPED") for t in _ticks(data, kind)
    )


@pytest.mark.timeout(360)
def test_daemon_and_webserver_ride_out_a_storage_failover_and_the_run_in_flight_succeeds(
    cluster, tmp_path, monkeypatch
):
    settings = OrchestrationSettings.load(database_url=cluster.url, state_dir=tmp_path / "state")
    env = {**prepare_instance(settings, tmp_path / "dagster"), "HEARTBEAT_RUN_S": "20", "TQDM_DISABLE": "1"}
    dagster = Dagster(tmp_path, {**os.environ, **env})
    dagster.start()
    try:
        launched = dagster.launch()
        wait_until(lambda: _started(dagster.query(), launched), 90, "the run in flight", 0.5)
        failover = cluster.kill_leader()
        after = time.time()

        wait_until(
            lambda: _succeeded_since(dagster.query(), "sensor", after), 60, "a sensor tick after the failover"
        )
        wait_until(
            lambda: _succeeded_since(dagster.query(), "schedule", after), 90, "a schedule tick after it"
        )
        wait_until(lambda: _outcome(dagster.query(), launched), 120, "the run in flight (or its retry) ended")
        assert _outcome(dagster.query(), launched) == "SUCCESS", dagster.logs()
        assert all(p.alive for p in dagster.processes), dagster.logs()
        print(f"failover {failover}; runs {[(r['status'], r['tags']) for r in _runs(dagster.query())]}")
    except Exception:
        print(dagster.logs())
        raise
    finally:
        dagster.stop()
        cluster.rejoin()


def _runs(data: dict[str, Any] | None) -> list[dict[str, Any]]:
    return (
        sorted(data["runsOrError"]["results"], key=lambda r: r["startTime"] or float("inf")) if data else []
    )


def _started(data: dict[str, Any] | None, run_id: str) -> bool:
    return any(r["runId"] == run_id and r["status"] == "STARTED" for r in _runs(data))


def _outcome(data: dict[str, Any] | None, run_id: str) -> str | None:
    """SUCCESS when the run or a retry of it succeeded; a failure's status once Dagster says no
    retry follows it (``dagster/will_retry``: it failed in its op, or the retries ran out)."""
    family = [
        r
        for r in _runs(data)
        if r["runId"] == run_id or {"key": "dagster/root_run_id", "value": run_id} in r["tags"]
    ]
    if any(r["status"] == "SUCCESS" for r in family):
        return "SUCCESS"
    final = [r for r in family if {"key": "dagster/will_retry", "value": "false"} in r["tags"]]
    return str(final[-1]["status"]) if final else None
