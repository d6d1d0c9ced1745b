"""The promotion gate on a team's own test folders: ``wv model gate`` runs ``candidate_evaluation``
with them in place of the simulator's sets, and ``wv model approve`` follows its verdict."""

import shutil
import sys
from pathlib import Path

import psycopg
import pytest

from realtime.storage.model_registry import ModelRegistry, RegistryError
from simulator.dataset import write_dataset
from wv.cli import main


@pytest.fixture(scope="module")
def own_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A team's fixed test folder and its newest labeled folder (a drifted week), as imported."""
    root = tmp_path_factory.mktemp("own")
    write_dataset(root / "frozen", 10, seed=31)
    write_dataset(root / "recent", 10, seed=32, drift="new_packages")
    return root / "frozen", root / "recent"


def _gate(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """``wv model gate ARGS`` through the console entry point: (exit code, what it printed)."""
    monkeypatch.setattr(sys, "argv", ["wv", "model", "gate", *args])
    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_gate_judges_a_candidate_on_the_teams_folders_and_approve_follows_it(
    db: psycopg.Connection,  # emptied: no production model left by an earlier test
    database_url: str,
    tmp_path: Path,
    own_data: tuple[Path, Path],
    shipped_model: Path,
    damaged_model: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    frozen, recent = own_data
    monkeypatch.setenv("WV_DATABASE_URL", database_url)
    monkeypatch.setenv("WV_STATE_DIR", str(tmp_path / "state"))
    registry = ModelRegistry(database_url, tmp_path / "state" / "models")
    registry.models_dir.mkdir(parents=True)
    folders = ("--frozen", str(frozen), "--recent", str(recent))

    registry.register("default", shipped_model.resolve(), "tiny")
    registry.approve("default", by="model-engineer")
    registry.register("worse", damaged_model, "tiny")
    code, output = _gate(monkeypatch, capsys, "worse", *folders)
    assert code == 1, output
    assert "does not beat production" in output and str(recent) in output
    evaluation = registry.get("worse").metrics["evaluation"]
    assert evaluation["sets"]["recent"]["source"] == str(recent)
    assert evaluation["sets"]["frozen"]["frames"] == 10
    assert registry.get("worse").status == "rejected"
    with pytest.raises(RegistryError, match="only candidates or retired"):
        registry.approve("worse", by="ana")

    # The other way round: the worse model in production, the shipped one is the better candidate.
    shutil.copytree(damaged_model, registry.models_dir / "bad-prod")
    registry.register("bad-prod", "bad-prod", "tiny")
    registry.update_metrics("bad-prod", {"evaluation": {"passed": True}})
    registry.approve("bad-prod", by="test")
    registry.register("better", shipped_model.resolve(), "tiny")
    with pytest.raises(RegistryError, match="has not run"):
        registry.approve("better", by="ana")
    code, output = _gate(monkeypatch, capsys, "better", "--recent", str(tmp_path))  # not a dataset folder
    assert code == 2, output
    assert "recent_data" in output and "annotations.jsonl" in output
    code, output = _gate(monkeypatch, capsys, "better", *folders)
    assert code == 0, output
    assert "better passed" in output
    assert registry.approve("better", by="ana").status == "production"
