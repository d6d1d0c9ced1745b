"""edge.yaml validation: defaults from WV_ settings, one clear message per problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import EdgeConfigError, load_config, single_camera
from wv.settings import load_settings


def test_a_minimal_file_takes_budgets_engine_and_outbox_limits_from_the_environment(
    tmp_path: Path, monkeypatch
):
    monkeypatch.setenv("WV_LATENCY_BUDGET_MS", "150")
    monkeypatch.setenv("WV_OUTBOX_QUOTA_MB", "64")
    file = tmp_path / "edge.yaml"
    file.write_text("facility: FAC-9\ncameras:\n  - {id: c1, source: 'synthetic://seed=1'}\n")
    cfg = load_config(file, load_settings())
    assert cfg.budgets.latency_ms == 150 and cfg.outbox.quota_mb == 64
    assert cfg.cameras[0].policy == "latest" and cfg.engine.name == "onnxruntime"
    assert cfg.model.pointer_path.name == "production.json"


def test_the_file_overrides_the_environment(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("WV_INFERENCE_DEADLINE_MS", "30")
    file = tmp_path / "edge.yaml"
    file.write_text(
        "facility: F\n"
        "cameras: [{id: c1, source: 'synthetic://', policy: every}]\n"
        "budgets: {inference_deadline_ms: 60}\n"
    )
    assert load_config(file, load_settings()).budgets.inference_deadline_ms == 60


def test_every_problem_is_named_with_its_path(tmp_path: Path):
    file = tmp_path / "edge.yaml"
    file.write_text(
        """
facility: F
cameras:
  - {id: c1, source: 'ftp://x', policy: sometimes}
  - id: c1
    source: 'synthetic://seed=1'
    zones: [{name: a, rect: [10, 10, 5, 20]}]
"""
    )
    with pytest.raises(EdgeConfigError) as err:
        load_config(file, load_settings())
    text = str(err.value)
    assert "cameras.0.policy" in text and "cameras.0.source" in text and "scheme must be" in text
    assert "cameras.1.zones.0" in text and "x1 < x2" in text


def test_a_bad_environment_default_names_the_variable(monkeypatch):
    monkeypatch.setenv("WV_INFERENCE_DEADLINE_MS", "500")
    with pytest.raises(EdgeConfigError, match="WV_INFERENCE_DEADLINE_MS"):
        single_camera("F", "c1", "synthetic://seed=1", load_settings())


def test_routes_must_name_configured_zones():
    with pytest.raises(EdgeConfigError, match="not among the zones"):
        from edge.config import build_config

        build_config(
            {
                "facility": "F",
                "cameras": [
                    {
                        "id": "c",
                        "source": "synthetic://",
                        "zones": [{"name": "a", "rect": [0, 0, 1, 1]}],
                        "routes": {"SKU-*": "b"},
                    }
                ],
            },
            load_settings(),
        )


def test_unreadable_or_invalid_yaml_is_reported(tmp_path: Path):
    with pytest.raises(EdgeConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml", load_settings())
    bad = tmp_path / "bad.yaml"
    bad.write_text("facility: [unclosed\n")
    with pytest.raises(EdgeConfigError, match="not valid YAML"):
        load_config(bad, load_settings())
