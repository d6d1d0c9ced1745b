"""`wv ui` starts the webserver and daemon on the PostgreSQL instance, serves the lineage, stops cleanly."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from wv.settings import PlatformSettings

WV = str(Path(sys.executable).with_name("wv"))
LINEAGE_QUERY = """{
  assetNodes { assetKey { path } dependencyKeys { path } }
  workspaceOrError { ... on Workspace { locationEntries { name
    locationOrLoadError { __typename ... on PythonError { message } } } } }
}"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_wv_ui_serves_the_asset_lineage_and_stops(
    instance_settings: PlatformSettings, tmp_path: Path
) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "WV_STATE_DIR": str(tmp_path),
        "WV_DAGSTER_PORT": str(port),
        "WV_DATABASE_URL": instance_settings.database_url,
    }
    started = subprocess.run([WV, "ui", "--background"], env=env, capture_output=True, text=True, timeout=280)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert f"http://127.0.0.1:{port}" in started.stdout
        pids = [int((tmp_path / "dagster" / f"{n}.pid").read_text()) for n in ("webserver", "daemon")]
        reply = httpx.post(
            f"http://127.0.0.1:{port}/graphql", json={"query": LINEAGE_QUERY}, timeout=60
        ).json()
        (location,) = reply["data"]["workspaceOrError"]["locationEntries"]
        assert location["locationOrLoadError"]["__typename"] == "RepositoryLocation", location
        edges = {
            (dep["path"][-1], node["assetKey"]["path"][-1])
            for node in reply["data"]["assetNodes"]
            for dep in node["dependencyKeys"]
        }
        assert {
            ("package_detections", "verified_samples"),
            ("verified_samples", "drift_evaluation"),
            ("candidate_evaluation", "production_model"),
        } <= edges
    finally:
        stopped = subprocess.run([WV, "ui", "stop"], env=env, capture_output=True, text=True, timeout=60)
    assert "stopped webserver, daemon" in stopped.stdout, stopped.stdout + stopped.stderr
    for pid in pids:
        assert (
            not Path(f"/proc/{pid}").exists() or b"dagster" not in Path(f"/proc/{pid}/cmdline").read_bytes()
        )
    assert not (tmp_path / "dagster" / "webserver.pid").exists()
