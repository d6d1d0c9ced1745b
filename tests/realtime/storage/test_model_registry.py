"""Model registry: candidates, human approval, the production pointer, rollback."""

import json
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from realtime.storage.model_registry import ModelRegistry, RegistryError


@pytest.fixture
def registry(db: psycopg.Connection, database_url: str, tmp_path: Path) -> ModelRegistry:
    for name in ("v1", "v2", "v3"):
        (tmp_path / "models" / name).mkdir(parents=True)
    return ModelRegistry(database_url, tmp_path / "models")


def _pass(registry: ModelRegistry, version: str, passed: bool = True) -> None:
    registry.update_metrics(version, {"evaluation": {"passed": passed}})


def test_approval_records_the_approver_and_writes_the_pointer(registry: ModelRegistry) -> None:
    registry.register("v1", "v1", "tiny")
    first = registry.approve("v1", by="ana")
    assert (first.status, first.approved_by) == ("production", "ana")
    registry.register("v2", registry.models_dir / "v2", "tiny", parent_version="v1")
    _pass(registry, "v2")
    second = registry.approve("v2", by="  bo ", reason="drift at FAC-002")
    assert second.approved_by == "bo" and second.approved_at is not None
    assert registry.get("v1").status == "retired"
    pointer = json.loads(registry.pointer_path.read_text())
    assert pointer["version"] == "v2" and pointer["previous"] == "v1" and pointer["approved_by"] == "bo"
    assert Path(pointer["path"]) == (registry.models_dir / "v2").resolve()
    assert not list(registry.models_dir.glob(".production.json.*"))  # no temp file left behind
    assert [(h["action"], h["version"], h["actor"]) for h in registry.history()] == [
        ("approve", "v1", "ana"),
        ("approve", "v2", "bo"),
    ]


def test_a_failed_or_unevaluated_candidate_cannot_replace_production(registry: ModelRegistry) -> None:
    registry.register("v1", "v1", "tiny")
    registry.approve("v1", by="ana")
    registry.register("v2", "v2", "tiny")
    with pytest.raises(RegistryError, match="has not run"):
        registry.approve("v2", by="ana")
    _pass(registry, "v2", passed=False)
    registry.reject("v2", "worse on the frozen test set")
    with pytest.raises(RegistryError, match="rejected"):
        registry.approve("v2", by="ana")
    with pytest.raises(RegistryError, match="approver"):
        registry.approve("v1", by=" ")
    assert registry.production().version == "v1"  # type: ignore[union-attr]


def test_rollback_restores_the_previous_model_and_marks_the_bad_one(registry: ModelRegistry) -> None:
    for version in ("v1", "v2", "v3"):
        registry.register(version, version, "tiny")
        _pass(registry, version)
        registry.approve(version, by="ana")
    restored = registry.rollback(by="oncall", reason="false rejects at FAC-003")
    assert restored.version == "v2" and registry.get("v3").status == "rolled_back"
    assert registry.read_pointer().previous == "v1"  # type: ignore[union-attr]
    assert registry.rollback(by="oncall").version == "v1"
    with pytest.raises(RegistryError, match="no previous"):
        registry.rollback(by="oncall")


def test_registering_a_missing_directory_or_a_different_path_fails(registry: ModelRegistry) -> None:
    with pytest.raises(RegistryError, match="does not exist"):
        registry.register("v9", "v9", "tiny")
    registry.register("v1", "v1", "tiny")
    assert registry.register("v1", "v1", "tiny").version == "v1"
    with pytest.raises(RegistryError, match="already registered"):
        registry.register("v1", "v2", "tiny")


def test_cli_approve_and_list(
    registry: ModelRegistry, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from realtime.storage import registry_cli

    registry.register("v1", "v1", "tiny")
    monkeypatch.setenv("WV_DATABASE_URL", database_url)
    monkeypatch.setenv("WV_MODEL_STORE", str(registry.models_dir))
    runner = CliRunner()
    result = runner.invoke(registry_cli.app, ["approve", "v1", "--by", "carla"])
    assert result.exit_code == 0, result.output
    assert registry.get("v1").approved_by == "carla"
    listed = runner.invoke(registry_cli.app, ["list", "--json"])
    assert json.loads(listed.output)[0]["status"] == "production"
    failed = runner.invoke(registry_cli.app, ["approve", "nope", "--by", "carla"])
    assert failed.exit_code == 1 and "not registered" in failed.output
