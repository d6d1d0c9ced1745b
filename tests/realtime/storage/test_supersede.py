"""A fallback detection replaced by the late primary result: marked, never counted twice, in
either arrival order, on both write paths, and replay-safe."""

from __future__ import annotations

import pytest

from bench.fixtures.events import EventFactory
from contract.proto import warehouse_vision_pb2 as pb
from realtime.codec import Reason, Validator
from realtime.storage.queries import package_history
from realtime.storage.writer import EventWriter, prepare

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def conn(db):
    prepare(db)
    return db


def fallback_and_primary(factory: EventFactory) -> tuple[list[pb.DetectionEvent], pb.DetectionEvent]:
    """Two fallback detections of one frame and the primary's replacement of the first."""
    first = factory.detection(fallback=True, model_version="fallback")
    second = factory.detection(fallback=True, model_version="fallback")
    primary = factory.detection()
    primary.event_time.CopyFrom(first.event_time)
    for name in ("camera_id", "track_id", "package_id", "frame_index"):
        setattr(primary, name, getattr(first, name))
    primary.supersedes.append(first.event_id)
    return [first, second], primary


def current(conn) -> dict[str, str | None]:
    return dict(conn.execute("SELECT event_id, superseded_by FROM package_detections").fetchall())


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "staged"])
@pytest.mark.parametrize("primary_first", [False, True], ids=["fallback-first", "primary-first"])
def test_the_replaced_fallback_row_names_its_replacement_whichever_arrives_first(
    conn, scalar, fast_path: bool, primary_first: bool
) -> None:
    fallback, primary = fallback_and_primary(EventFactory("FAC-001", seed=91))
    writer = EventWriter(fast_path=fast_path)
    batches = [[primary], fallback] if primary_first else [fallback, [primary]]
    for batch in batches:
        writer.write(conn, batch)
    expected = {fallback[0].event_id: primary.event_id, fallback[1].event_id: None, primary.event_id: None}
    assert current(conn) == expected
    for batch in batches:  # replays change nothing
        assert writer.write(conn, batch).events_written == 0
    assert current(conn) == expected
    supersedes = scalar("SELECT supersedes FROM package_detections WHERE event_id = %s", primary.event_id)
    assert supersedes == [fallback[0].event_id]


def test_hourly_counts_count_a_replaced_detection_and_its_replacement_once(conn, scalar) -> None:
    factory = EventFactory("FAC-001", seed=92)
    fallback, primary = fallback_and_primary(factory)
    EventWriter().write(conn, [*fallback, primary, factory.decision()])
    row = conn.execute(
        "SELECT sum(detections), sum(decisions), sum(fallback) FROM facility_hourly_counts WHERE facility_id = 'FAC-001'"
    ).fetchone()
    assert row == (2, 1, 1)  # primary + the unreplaced fallback detection; one fallback answer left
    assert scalar("SELECT count(*) FROM package_detections") == 4  # the provisional row is kept


def test_the_centre_refuses_a_decision_or_an_event_that_supersedes_itself() -> None:
    factory = EventFactory("FAC-001", seed=93)
    decision = factory.decision()
    decision.supersedes.append("another-event")
    itself = factory.detection()
    itself.supersedes.append(itself.event_id)
    validator = Validator(
        lambda _f: True, known_camera=lambda _f, _c: True, max_future_skew_s=60, max_message_bytes=1 << 20
    )
    decoded = validator.events([decision, itself])
    assert [(r.reason, r.detail) for r in decoded.rejections] == [(Reason.INVALID_VALUE, "supersedes")] * 2


def test_the_package_history_shows_the_provisional_row_as_superseded(conn) -> None:
    fallback, primary = fallback_and_primary(EventFactory("FAC-001", seed=94))
    EventWriter().write(conn, [*fallback, primary])
    timeline = package_history(conn, primary.package_id)
    assert timeline is not None
    shown = {e.detection.event_id: e.detection for e in timeline.entries if e.HasField("detection")}
    assert shown[fallback[0].event_id].superseded_by == primary.event_id
    assert shown[fallback[0].event_id].fallback
    assert list(shown[primary.event_id].supersedes) == [fallback[0].event_id]
