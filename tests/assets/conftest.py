"""Fixtures for asset tests: decisions written through the real write path, resources on temp folders."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from assets.common.resources import DatabaseResource, ModelRegistryResource, WandbResource
from assets.model_quality.resources import LabelingResource
from bench.fixtures.events import EventFactory
from contract.proto import warehouse_vision_pb2 as pb
from realtime.storage.writer import EventWriter, prepare

DAY = date(2025, 3, 10)
CONDITION_MIX = ["ok"] * 16 + ["crushed", "torn", "wet", "open"]


@pytest.fixture
def write_decisions(database_url: str) -> Callable[..., list[pb.DetectionEvent]]:
    """Write ``n`` decisions (plus one detection each) for a facility-day; returns the decisions."""

    def write(
        n: int,
        facility: str = "FAC-001",
        day: date = DAY,
        seed: int = 0,
        confidence: tuple[float, float] = (0.86, 0.99),
        embedding: Callable[[int], list[float]] | None = None,
    ) -> list[pb.DetectionEvent]:
        rng = random.Random(seed)
        start = datetime(day.year, day.month, day.day, 6, tzinfo=UTC)
        factory = EventFactory(facility, seed=seed, start=start, step=timedelta(seconds=30))
        events: list[pb.DetectionEvent] = []
        decisions = []
        for i in range(n):
            fields: dict[str, Any] = {
                "condition": rng.choice(CONDITION_MIX),
                "condition_confidence": round(rng.uniform(*confidence), 4),
            }
            if embedding is not None:
                fields["embedding"] = embedding(i)
            track = factory.package(detections=1, **fields)
            events.extend(track)
            decisions.append(track[-1])
        with psycopg.connect(database_url) as conn:
            prepare(conn)
            EventWriter().write(conn, events)
            conn.commit()
        return decisions

    return write


@pytest.fixture
def write_truth(tmp_path: Path) -> Callable[[dict[str, str]], Path]:
    """Write the simulator's answer key (package id → condition) where the ground-truth verifier reads it."""

    def write(truth: dict[str, str], name: str = "truth.jsonl") -> Path:
        path = tmp_path / "truth" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            "".join(json.dumps({"package_id": k, "condition": v}) + "\n" for k, v in truth.items())
        )
        return path

    return write


@pytest.fixture
def resources(database_url: str, tmp_path: Path, orchestration_settings: Any) -> dict[str, Any]:
    """Resources on the test database and temp folders; the simulator's truth answers tasks."""
    return {
        "settings": orchestration_settings,
        "database": DatabaseResource(url=database_url),
        "model_registry": ModelRegistryResource(
            database_url=database_url, models_dir=str(tmp_path / "models")
        ),
        "labeling": LabelingResource(
            export_dir=str(tmp_path / "tasks"),
            import_dir=str(tmp_path / "answers"),
            truth_dir=str(tmp_path / "truth"),
            verifier="ground-truth",
        ),
        "wandb": WandbResource(mode="offline", directory=str(tmp_path / "wandb")),
    }
