"""Each facility-day's edge.yaml is a valid edge configuration streaming that day's cameras."""

from pathlib import Path

from edge.config import build_config
from wv.demo.edges import edge_config
from wv.demo.environment import DemoEnvironment
from wv.demo.scenario import Scenario
from wv.settings import PlatformSettings


def test_the_demo_edge_config_validates_and_streams_the_days_cameras(settings: PlatformSettings) -> None:
    env = DemoEnvironment(settings, "20260101000000")
    scenario = Scenario(("FAC-001", "FAC-002", "FAC-003"))
    day = scenario.dates[scenario.drift_day - 1]
    bursts = scenario.day_plan(day)["FAC-002"]

    config = build_config(edge_config(env, "FAC-002", bursts), settings)

    assert [(c.id, c.source, c.policy) for c in config.cameras] == [
        (b.camera, b.uri, "every") for b in bursts
    ]
    assert all(f"drift={scenario.drift}" in c.source for c in config.cameras)
    assert config.model.models_dir == env.models_dir
    assert config.model.fallback == env.models_dir / "fallback" and config.budgets.fallback is True
    assert config.budgets.inference_deadline_ms < config.budgets.latency_ms
    assert config.outbox.path == Path(env.root / "edge" / "FAC-002" / "outbox")
    assert env.variables()["WV_DATABASE_URL"].endswith("_demo")
    assert env.variables()["WV_KAFKA_TOPIC_PREFIX"] == "wv.demo.20260101000000."
