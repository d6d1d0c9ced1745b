"""Renders of the warehouse-vision chart (deploy/render.py: Helm's Go SDK, no helm binary), shared by
the deploy tests. Each scenario is one `helm template` with the values files of deploy/values/.

Tests reach the helpers through the ``chart`` fixture (tests import with ``--import-mode=importlib``,
so a conftest is not importable as a module)."""

from __future__ import annotations

import functools
import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
VALUES = DEPLOY / "values"

SCENARIOS: dict[str, list[str]] = {
    "defaults": [],
    "dev": ["dev.yaml"],
    "reference": ["reference.yaml"],
    "reference-tls": ["reference.yaml", "tls.yaml"],
}
"""Scenario -> values files layered in order (as `-f a.yaml -f b.yaml`)."""

KUBE_VERSIONS = ("1.27.0", "1.37.0")
"""The chart's kubeVersion floor (gRPC probes are GA from 1.27) and the newest schemas shipped."""

WORKLOADS = ("Deployment", "StatefulSet", "Job")


@functools.cache
def renderer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("wv_deploy_render", DEPLOY / "render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def scenario_values(name: str) -> dict[str, Any]:
    """The merged values files of a scenario (without the chart's defaults)."""
    return renderer().load_values(*(VALUES / f for f in SCENARIOS[name]))  # type: ignore[no-any-return]


@functools.cache
def _rendered(name: str) -> tuple[dict[str, Any], ...]:
    render = renderer()
    return tuple(render.objects(render.render(scenario_values(name))))


def rendered(name: str) -> list[dict[str, Any]]:
    return list(_rendered(name))


@pytest.fixture(params=sorted(SCENARIOS))
def scenario(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def objects(scenario: str) -> list[dict[str, Any]]:
    return rendered(scenario)


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def workloads(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] in WORKLOADS]


def named(objs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def render_error(values: dict[str, Any]) -> str:
    """The message of a render that must fail (Helm's `fail`)."""
    with pytest.raises(Exception) as caught:
        renderer().render(values)
    return re.sub(r"\s+", " ", str(caught.value))


class Chart:
    """The helpers above, for the tests (``chart.rendered("reference")``, ``chart.workloads(objs)``)."""

    ROOT = ROOT
    DEPLOY = DEPLOY
    SCENARIOS = SCENARIOS
    KUBE_VERSIONS = KUBE_VERSIONS
    renderer = staticmethod(renderer)
    scenario_values = staticmethod(scenario_values)
    rendered = staticmethod(rendered)
    pod_spec = staticmethod(pod_spec)
    workloads = staticmethod(workloads)
    named = staticmethod(named)
    selects = staticmethod(selects)
    render_error = staticmethod(render_error)


@pytest.fixture(scope="session")
def chart() -> type[Chart]:
    return Chart
