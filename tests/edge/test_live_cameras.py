"""Cameras added, re-pointed and removed in edge.yaml take effect while the edge runs: no restart,
the removed camera's counts stay in the metrics and every event written reaches the centre."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.config import load_config
from edge.service import EdgeService


def wait_for(condition: Callable[[], bool], timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def camera(camera_id: str, seed: int) -> dict[str, Any]:
    return {"id": camera_id, "source": f"synthetic://seed={seed}&fps=15", "policy": "latest"}


@pytest.mark.timeout(180)
def test_cameras_added_re_pointed_and_removed_in_the_file_apply_without_a_restart(
    edge_config, kafka_bootstrap, topic_prefix, settings, tmp_path: Path
):
    cfg = edge_config(
        [camera("cam-1", 1)],
        capture={"workers": 1},  # cameras decoded in a worker process, as on a GPU box
        transport={"kafka_bootstrap": kafka_bootstrap, "topic_prefix": topic_prefix},
        budgets={"fallback": False},
    )
    path = tmp_path / "edge.yaml"
    data = cfg.model_dump(mode="json")

    def write(*cameras: dict[str, Any]) -> None:
        path.write_text(yaml.safe_dump({**data, "cameras": list(cameras)}))

    write(camera("cam-1", 1))
    service = EdgeService(
        load_config(path, settings), reload=lambda: load_config(path, settings), config_file=path
    )
    frames = service.metrics.registry.get_sample_value
    service.start()
    try:
        p = service.pipeline
        wait_for(lambda: p.frames_by_camera["cam-1"] >= 15)

        write(camera("cam-1", 2), camera("cam-2", 3))  # cam-1 re-pointed, cam-2 added
        # between the old reader's retirement and the new one's start cam-1 is briefly absent
        wait_for(
            lambda: (cam := service.cameras.get("cam-1")) is not None and "seed=2" in cam.reader.spec.source
        )
        before = p.frames_by_camera["cam-1"]
        wait_for(lambda: p.frames_by_camera["cam-2"] >= 15 and p.frames_by_camera["cam-1"] >= before + 15)

        write(camera("cam-2", 3))  # cam-1 removed
        wait_for(lambda: "cam-1" not in service.cameras)
        processed = p.frames_by_camera["cam-1"]
        captured = frames("wv_edge_frames_captured_total", {"camera": "cam-1"})
        assert captured is not None and captured >= processed  # the removed camera still counts
        assert frames("wv_edge_frames_total", {"camera": "cam-1"}) == processed
        after = p.frames_by_camera["cam-2"]
        wait_for(lambda: p.frames_by_camera["cam-2"] >= after + 15)  # the others never stopped
        assert p.frames_by_camera["cam-1"] == processed
    finally:
        service.shutdown(drain_timeout_s=15)
    assert not service.stalls and not service.abandoned
    written = service.outbox.counters["written"]
    assert written > 0 and service.outbox_left == 0
    assert service.relay.counters["delivered"] == written
