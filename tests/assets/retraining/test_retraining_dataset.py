"""The retraining manifest: a verified label covers every frame of its package's track, and the
recent hold-out is split by package, so no view of a held-out package is trained on."""

from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest

from assets.model_quality.crops import parse_synthetic_uri
from assets.retraining.assets import is_recent_holdout, load_manifest, retraining_dataset
from bench.fixtures.events import EventFactory
from contract.proto import warehouse_vision_pb2 as pb
from realtime.storage.writer import EventWriter, prepare

START = datetime(2025, 3, 10, 6, tzinfo=UTC)
CAMERA = ("FAC-001", "cam-a", f"synthetic://seed=11&fps=10&start_time={START.timestamp():.0f}")


def _package(held_out: bool) -> str:
    return next(p for i in count() if is_recent_holdout(p := f"PKG-{i:04d}") == held_out)


def _track(factory: EventFactory, package_id: str, at: datetime) -> list[pb.DetectionEvent]:
    """Three detections 0.5 s apart (one frame in five at 10 fps) and the package's decision."""
    events = []
    for i in range(4):
        fields = {"event_time": at + timedelta(seconds=0.5 * i)}
        event = factory.decision(**fields) if i == 3 else factory.detection(**fields)
        event.camera_id, event.package_id = CAMERA[1], package_id
        event.bbox.CopyFrom(pb.BoundingBox(x1=0.1 + 0.1 * i, y1=0.2, x2=0.2 + 0.1 * i, y2=0.4))
        events.append(event)
    return events


def _verify(conn: psycopg.Connection, decision: pb.DetectionEvent, condition: str) -> None:
    box = decision.bbox
    conn.execute(
        """
        INSERT INTO verified_samples (event_id, facility_id, sample_date, event_time, package_id, camera_id,
            predicted_condition, predicted_confidence, verified_condition, verifier, verified_at, bbox, label_source)
        VALUES (%s, %s, %s, %s, %s, %s, 'ok', 0.9, %s, 'simulator', now(), %s, 'ground-truth')
        """,
        (
            decision.event_id, CAMERA[0], START.date(), decision.event_time.ToDatetime(UTC), decision.package_id,
            CAMERA[1], condition, [box.x1, box.y1, box.x2, box.y2],
        ),
    )  # fmt: skip


def test_a_verified_label_covers_the_package_track_and_the_hold_out_is_split_by_package(
    db: psycopg.Connection, database_url: str, resources: dict[str, Any]
) -> None:
    factory = EventFactory(CAMERA[0], seed=3)
    trained, held = _package(held_out=False), _package(held_out=True)
    trained_track = _track(factory, trained, START + timedelta(seconds=10))
    held_track = _track(factory, held, START + timedelta(seconds=20))
    unverified = _track(factory, "PKG-unverified", START + timedelta(seconds=30))
    late = _track(factory, trained, START + timedelta(minutes=5))  # the same id, long after: not its track
    with psycopg.connect(database_url) as conn:
        prepare(conn)
        conn.execute("INSERT INTO cameras (facility_id, camera_id, source_uri) VALUES (%s, %s, %s)", CAMERA)
        EventWriter().write(conn, [*trained_track, *held_track, *unverified, *late])
        _verify(conn, trained_track[-1], "torn")
        _verify(conn, held_track[-1], "wet")
        conn.commit()

    result = dg.materialize(
        [retraining_dataset],
        resources=resources,
        run_config={"ops": {"retraining_dataset": {"config": {"replay_frames": 0}}}},
    )
    meta = result.asset_materializations_for_node("retraining_dataset")[0].metadata
    dataset = load_manifest(Path(str(meta["manifest"].value)))

    camera = parse_synthetic_uri(CAMERA[1], CAMERA[2])
    assert camera is not None

    def frames(track: list[pb.DetectionEvent]) -> list[int]:
        return [camera.frame_index(e.event_time.ToDatetime(UTC)) for e in track]

    assert [r.frame_index for r in dataset.train] == frames(trained_track)
    for ref, event in zip(dataset.train, trained_track, strict=True):
        ((box, condition),) = ref.overrides
        assert box == pytest.approx((event.bbox.x1, event.bbox.y1, event.bbox.x2, event.bbox.y2))
        assert condition == "torn"
    assert [r.frame_index for r in dataset.recent] == frames(held_track)[-1:]
    assert [o[1] for o in dataset.recent[0].overrides] == ["wet"]
    assert meta["train_track_events"].value == 3
