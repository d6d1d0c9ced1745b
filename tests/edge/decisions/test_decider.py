"""Decisions per track: one event per confirmed track, zones, identity and the anomaly flags."""

from __future__ import annotations

import json

import numpy as np
import pytest

from contract.frames import Box, Detection, Frame, PackageTruth
from contract.proto import warehouse_vision_pb2 as pb
from edge.config import DecisionConfig
from edge.decisions.decider import Decider
from edge.decisions.events import FrameContext, ModelInfo
from edge.decisions.references import SkuReferences
from edge.decisions.zones import Zone, ZoneMap
from edge.tracking.iou import IouTracker
from simulator.identity import SimulatorIdentity

LANES = ZoneMap(
    [
        Zone("lane-a", np.array([[0, 0], [640, 0], [640, 120], [0, 120]], dtype=np.float32)),
        Zone("lane-b", np.array([[0, 120], [640, 120], [640, 240], [0, 240]], dtype=np.float32)),
    ]
)
EMB = np.eye(8, dtype=np.float32)
FALLBACK_EMB = np.ones(4, dtype=np.float32) / 2  # the fallback model's embedding space is another size
PRIMARY = ModelInfo("v1", "onnxruntime", "int8")


def config(**kw: object) -> DecisionConfig:
    return DecisionConfig(hard_example_band=(0.65, 0.85), detection_sample_rate=0.0, **kw)


def run_track(
    decider: Decider,
    condition_probs: np.ndarray,
    y: float = 30.0,
    frames: int = 12,
    truth: PackageTruth | None = None,
    embedding: np.ndarray = EMB[0],
    prefix: str = "cam",
    fallback_every: int = 0,
) -> list[pb.DetectionEvent]:
    tracker = IouTracker(prefix, min_hits=3, max_age=2)
    events: list[pb.DetectionEvent] = []
    for i in range(frames + 4):
        box = Box(10 + 5 * i, y, 90 + 5 * i, y + 50)
        fallback = bool(fallback_every) and i % fallback_every == 0
        model = ModelInfo("fallback", "onnxruntime", "fp32", True) if fallback else PRIMARY
        seen = FALLBACK_EMB if fallback else embedding
        dets = [Detection(box, 0.9, condition_probs, seen)] if i < frames else []
        gt = (
            [
                PackageTruth(
                    truth.package_id, truth.sku, "box", truth.condition, box, truth.zone, truth.expected_zone
                )
            ]
            if truth
            else []
        )
        frame = Frame("cam-1", i, 1_700_000_000 + i / 30, np.zeros((4, 4, 3), np.uint8), gt)
        ctx = FrameContext(
            "FAC-1",
            "cam-1",
            i,
            1_700_000_000 + i / 30,
            model,
            {"infer_ms": 5.0},
        )
        step = tracker.update(i, ctx.timestamp, dets)
        events += decider.observe(ctx, step.matches, frame)
        events += [e for t in step.ended if (e := decider.decide(t, ctx)) is not None]
    return events


def kinds(event: pb.DetectionEvent) -> set[str]:
    return {a.kind for a in event.anomalies}


OK = np.array([0.96, 0.01, 0.01, 0.01, 0.01], dtype=np.float32)
CRUSHED = np.array([0.03, 0.94, 0.01, 0.01, 0.01], dtype=np.float32)
UNSURE = np.array([0.75, 0.22, 0.01, 0.01, 0.01], dtype=np.float32)


def test_one_decision_per_track_with_smoothed_condition_and_model_fields():
    events = run_track(Decider(config(), LANES, {}, None), OK)
    assert len(events) == 1
    e = events[0]
    assert e.kind == pb.EVENT_KIND_DECISION and e.condition == pb.CONDITION_OK
    assert e.frames_observed == 12 and e.zone == "lane-a"
    assert (e.model_version, e.engine, e.precision) == ("v1", "onnxruntime", "int8")
    assert e.package_id == e.track_id  # no identity source: the track is the package
    assert e.condition_confidence == pytest.approx(0.96, abs=0.03)
    assert e.anomalies == [] and not e.hard_example
    assert len(e.embedding) == 8 and e.first_seen.seconds == 1_700_000_000


def test_a_track_seen_by_the_primary_and_the_fallback_keeps_the_primary_embedding():
    (e,) = run_track(Decider(config(), LANES, {}, None), OK, fallback_every=3)  # frames 0, 3, 6, 9

    assert e.frames_observed == 12 and e.condition == pb.CONDITION_OK
    assert list(e.embedding) == pytest.approx(list(EMB[0]))  # never summed with the other space


def test_damaged_package_is_flagged_with_deterministic_anomaly_id():
    (e,) = run_track(Decider(config(), LANES, {}, None), CRUSHED)
    (flag,) = e.anomalies
    assert e.condition == pb.CONDITION_CRUSHED
    assert flag.kind == "damaged" and flag.severity == pb.SEVERITY_CRITICAL
    assert flag.anomaly_id == f"{e.event_id}:damaged" and flag.event_id == e.event_id
    assert json.loads(flag.evidence_json)["condition"] == "crushed"


def test_confidence_inside_the_hard_example_band_flags_low_confidence():
    (e,) = run_track(Decider(config(), LANES, {}, None), UNSURE)
    assert e.hard_example and kinds(e) == {"low_confidence"}


def test_misplaced_when_observed_zone_differs_from_the_route_in_config():
    truth = PackageTruth("pkg-1", "SKU-0042", "box", "ok", Box(0, 0, 1, 1), "lane-a", "lane-a")
    decider = Decider(config(), LANES, {"SKU-004*": "lane-b"}, None, identity=SimulatorIdentity())
    (e,) = run_track(decider, OK, truth=truth)
    assert (e.package_id, e.sku, e.zone, e.expected_zone) == ("pkg-1", "SKU-0042", "lane-a", "lane-b")
    assert kinds(e) == {"misplaced"}


def test_identity_and_expected_zone_come_from_the_identity_reader_only():
    truth = PackageTruth("pkg-2", "SKU-0007", "box", "ok", Box(0, 0, 1, 1), "lane-b", "lane-a")
    reader = SimulatorIdentity()
    (with_truth,) = run_track(Decider(config(), LANES, {}, None, identity=reader), OK, y=150, truth=truth)
    assert with_truth.package_id == "pkg-2" and with_truth.expected_zone == "lane-a"
    assert kinds(with_truth) == {"misplaced"}
    (without,) = run_track(Decider(config(), LANES, {}, None), OK, y=150, truth=truth)
    assert without.package_id == without.track_id and without.expected_zone == "" and not without.anomalies


def test_unknown_appearance_against_the_sku_reference_shared_through_redis(redis_url: str, redis_client):
    refs = SkuReferences(redis_url, min_count=3)
    truth = PackageTruth("p", "SKU-9", "box", "ok", Box(0, 0, 1, 1), "lane-a", "lane-a")
    decider = Decider(config(), LANES, {}, refs, identity=SimulatorIdentity())
    for n in range(4):  # four ordinary packages of the SKU teach the reference
        run_track(decider, OK, truth=truth, prefix=f"learn{n}")
    assert redis_client.exists("wv:sku-ref:v1:SKU-9")
    # A fresh edge box (empty local cache) finds the reference in Redis and flags a stranger.
    other = Decider(config(), LANES, {}, SkuReferences(redis_url, min_count=3), identity=SimulatorIdentity())
    (e,) = run_track(other, OK, truth=truth, embedding=EMB[1])
    assert kinds(e) == {"unknown_appearance"}
    assert other.references.stats.redis_hits == 1 and other.references.stats.hit_rate == 1.0


def test_a_shared_reference_of_another_models_size_is_ignored_and_relearnt(redis_url: str, redis_client):
    key = "wv:sku-ref:v1:SKU-9"  # another model, also called v1, with 64-value embeddings
    redis_client.hset(key, mapping={"vector": np.ones(64, dtype=np.float32).tobytes(), "count": 50})
    refs = SkuReferences(redis_url, min_count=3)
    truth = PackageTruth("p", "SKU-9", "box", "ok", Box(0, 0, 1, 1), "lane-a", "lane-a")
    decider = Decider(config(), LANES, {}, refs, identity=SimulatorIdentity())

    for n in range(4):  # decisions go on (no shape error); the reference is learnt again
        (e,) = run_track(decider, OK, truth=truth, prefix=f"learn{n}")
        assert "unknown_appearance" not in kinds(e)

    assert refs.stats.foreign >= 1
    assert len(redis_client.hget(key, "vector")) == EMB[0].astype(np.float32).nbytes


def test_references_keep_working_locally_when_redis_is_down():
    refs = SkuReferences("redis://127.0.0.1:1/0", min_count=2)
    truth = PackageTruth("p", "SKU-1", "box", "ok", Box(0, 0, 1, 1), "lane-a", "lane-a")
    decider = Decider(config(), LANES, {}, refs, identity=SimulatorIdentity())
    for n in range(3):
        run_track(decider, OK, truth=truth, prefix=f"n{n}")
    (e,) = run_track(decider, OK, truth=truth, embedding=EMB[2])
    assert kinds(e) == {"unknown_appearance"}
    assert refs.stats.redis_errors >= 1 and refs.stats.hits >= 1


def test_detections_are_sampled_at_the_configured_rate_for_confirmed_tracks_only():
    decider = Decider(config().model_copy(update={"detection_sample_rate": 1.0}), LANES, {}, None)
    events = run_track(decider, OK, frames=10)
    detections = [e for e in events if e.kind == pb.EVENT_KIND_DETECTION]
    assert len(detections) == 10 - 2  # the first two frames of the track are tentative
    assert len({e.event_id for e in events}) == len(events)
