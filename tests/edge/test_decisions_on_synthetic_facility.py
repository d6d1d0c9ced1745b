"""End to end on the synthetic facility: every package that crosses the view yields exactly one
decision event on the broker, with the right condition."""

from __future__ import annotations

import math
from collections import Counter, defaultdict

import pytest

from contract.proto import warehouse_vision_pb2 as pb
from contract.vocabulary import CONDITIONS
from edge.service import EdgeService
from edge.sources.factory import open_source

FRAMES = 200
# Busy belts (more, faster parcels) so 200 frames per camera hold enough complete crossings.
SCENE = "realtime=0&arrival_rate=4&belt_speed=0.5"
CAMERAS = {"cam-1": f"synthetic://seed=11&{SCENE}", "cam-2": f"synthetic://seed=12&{SCENE}"}
MIN_FRAMES = 10
"""A ground-truth package is one visible in at least this many frames (not clipped by the run's ends)."""


def ground_truth(camera: str, uri: str) -> dict[str, tuple[str, int]]:
    seen: dict[str, list[str]] = defaultdict(list)
    with open_source(f"{uri}&frames={FRAMES}", camera) as source:
        for frame in source:
            for t in frame.truth:
                seen[t.package_id].append(t.condition)
    return {pid: (conds[0], len(conds)) for pid, conds in seen.items()}


def run_edge(
    edge_config, collect, kafka_bootstrap, topic_prefix, interval: int, workers: int, post_thread: bool
):
    """One edge over both cameras until their streams end; returns it and every event it published."""
    cfg = edge_config(
        [
            {"id": cam, "source": f"{uri}&frames={FRAMES}", "policy": "every", "interval": interval}
            for cam, uri in CAMERAS.items()
        ],
        capture={"workers": workers},
        transport={"kafka_bootstrap": kafka_bootstrap, "topic_prefix": topic_prefix},
        decisions={"detection_sample_rate": 0.05},
        budgets={"fallback": False},  # an offline replay: every frame waits for the primary model
        engine={"post_thread": post_thread},
    )
    collector = collect(kafka_bootstrap, f"{topic_prefix}detections")
    service = EdgeService(cfg)
    service.start()
    assert service.wait_finished(180)
    service.shutdown()
    written = service.outbox.counters["written"]
    assert service.outbox_left == 0 and written > 0
    assert collector.wait(lambda: len(collector.events) >= written, 30)
    assert len({e.event_id for e in collector.events}) == len(collector.events) == written
    return service, collector.events


def judged(events: list[pb.DetectionEvent]) -> tuple[list[str], list[str], dict[str, tuple]]:
    """Ground-truth packages, those with exactly one decision of the right condition, the misses."""
    decisions = [e for e in events if e.kind == pb.EVENT_KIND_DECISION]
    by_package = Counter(e.package_id for e in decisions)
    condition_of = {e.package_id: CONDITIONS[e.condition - 1] for e in decisions}
    truth = {pid: v for cam, uri in CAMERAS.items() for pid, v in ground_truth(cam, uri).items()}
    packages = [pid for pid, (_, frames) in truth.items() if frames >= MIN_FRAMES]
    right = [pid for pid in packages if by_package[pid] == 1 and condition_of[pid] == truth[pid][0]]
    report = {
        pid: (truth[pid], by_package[pid], condition_of.get(pid)) for pid in packages if pid not in right
    }
    return packages, right, report


@pytest.mark.timeout(300)
def test_each_package_gets_exactly_one_decision_with_the_right_condition_also_inferring_every_third_frame(
    edge_config, collect, kafka_bootstrap, topic_prefix
):
    service, events = run_edge(edge_config, collect, kafka_bootstrap, f"{topic_prefix}k1.", 1, 0, True)
    assert sum(service.pipeline.frames_by_camera.values()) == FRAMES * len(CAMERAS)  # `every` drops nothing
    packages, right, report = judged(events)
    assert len(packages) >= 20
    assert len(right) / len(packages) >= 0.95, report
    # Every decision carries the model, engine, precision and the stage timings.
    for e in events:
        if e.kind == pb.EVENT_KIND_DECISION:
            assert e.model_version == "v1" and e.engine == "onnxruntime" and e.precision == "int8"
            assert e.timings.end_to_end_ms > 0 and e.timings.infer_ms > 0 and e.frames_observed >= 3

    # DeepStream's `interval`: a third of the frames inferred, in decode worker processes; the
    # tracker carries the boxes between. One decision per package, accuracy within 0.5 point.
    # This run's inference loop is one thread (engine.post_thread: false), the first run's two.
    sparse, events = run_edge(edge_config, collect, kafka_bootstrap, f"{topic_prefix}k3.", 3, 1, False)
    assert sum(sparse.pipeline.frames_by_camera.values()) == sum(math.ceil(FRAMES / 3) for _ in CAMERAS)
    assert not sparse.hub.drops
    packages_k3, right_k3, report_k3 = judged(events)
    assert packages_k3 == packages
    assert len(right_k3) / len(packages) >= len(right) / len(packages) - 0.005, report_k3
