"""deploy/: the Kubernetes instance config, per-job Kubernetes tags and Helm values are valid."""

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config
from dagster_k8s import K8sRunLauncher
from dagster_k8s.job import USER_DEFINED_K8S_JOB_CONFIG_SCHEMA

from orchestration.jobs import JOBS

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def test_instance_config_validates_and_launches_runs_on_kubernetes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("HOST", "PORT", "USER", "PASSWORD", "DB"):
        monkeypatch.setenv(f"DAGSTER_PG_{var}", "5432" if var == "PORT" else "x")
    shutil.copy(DEPLOY / "dagster-instance.yaml", tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))
    launcher = config["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s", "K8sRunLauncher")
    checked = process_config(K8sRunLauncher.config_type(), launcher["config"])
    assert checked.success, checked.errors
    assert config["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"


def test_every_job_carries_valid_kubernetes_config_and_retraining_asks_for_a_gpu() -> None:
    configs = {}
    for job in JOBS:
        assert "dagster-k8s/config" in job.tags, f"{job.name} has no dagster-k8s/config tag"
        k8s = configs[job.name] = json.loads(job.tags["dagster-k8s/config"])
        checked = process_config(USER_DEFINED_K8S_JOB_CONFIG_SCHEMA, k8s)
        assert checked.success, (job.name, checked.errors)
    resources = configs["retraining"]["container_config"]["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == "1" and resources["limits"]["nvidia.com/gpu"] == "1"


def test_helm_values_match_the_launcher_schema_and_the_code_location() -> None:
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    launcher = {_snake(k): v for k, v in values["runLauncher"]["config"]["k8sRunLauncher"].items()}
    launcher["env_config_maps"] = [m["name"] for m in launcher["env_config_maps"]]
    launcher["env_secrets"] = [s["name"] for s in launcher["env_secrets"]]
    launcher["run_k8s_config"] = {
        _snake(k): {_snake(a): b for a, b in v.items()} for k, v in launcher["run_k8s_config"].items()
    }
    checked = process_config(K8sRunLauncher.config_type(), {**launcher, "instance_config_map": "chart-made"})
    assert checked.success, checked.errors
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "orchestration.definitions", "-a", "defs"]
    assert values["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"
    queued = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert {"key": "wv/job", "value": "retraining", "limit": 1} in queued["tagConcurrencyLimits"]
