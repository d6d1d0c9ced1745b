"""The RocksDB outbox: replay order, acknowledgement, TTL, quota and durability across reopen."""

from __future__ import annotations

from pathlib import Path

from contract.proto import warehouse_vision_pb2 as pb
from edge.decisions.events import FrameContext, ModelInfo, anomaly, new_event
from edge.outbox.store import Outbox
from edge.publish import wire


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def open_outbox(path: Path, clock: Clock, **kw: object) -> Outbox:
    return Outbox(path, clock=clock, sync=False, **kw)  # type: ignore[arg-type]


def test_pending_yields_anomalies_first_then_oldest_first(tmp_path: Path):
    ob = open_outbox(tmp_path, Clock())
    ob.put([(b"n1", False), (b"a1", True)])
    ob.put([(b"n2", False)])
    ob.put([(b"a2", True)])
    assert [e.payload for e in ob.pending(10)] == [b"a1", b"a2", b"n1", b"n2"]
    assert [e.payload for e in ob.pending(3, skip={ob.pending(1)[0].key})] == [b"a2", b"n1", b"n2"]


def test_only_acknowledged_entries_leave(tmp_path: Path):
    ob = open_outbox(tmp_path, Clock())
    keys = ob.put([(b"x" * 10, False), (b"y" * 10, True), (b"z" * 10, False)])
    assert ob.ack([keys[1], keys[1]]) == 1  # acknowledging twice removes once
    assert [e.payload for e in ob.pending(10)] == [b"x" * 10, b"z" * 10]
    assert len(ob) == 2 and ob.counters["acked"] == 1


def test_entries_survive_a_reopen_and_new_keys_continue_the_sequence(tmp_path: Path):
    clock = Clock()
    ob = open_outbox(tmp_path, clock)
    ob.put([(b"first", False), (b"flag", True)])
    size = ob.size_bytes
    ob.close()
    again = open_outbox(tmp_path, clock)
    assert len(again) == 2 and again.size_bytes == size
    again.put([(b"second", False)])
    assert [e.payload for e in again.pending(10)] == [b"flag", b"first", b"second"]


def test_entries_older_than_the_ttl_expire_and_are_counted(tmp_path: Path):
    clock = Clock()
    ob = open_outbox(tmp_path, clock, ttl_s=3600)
    ob.put([(b"old", False), (b"old-flag", True)])
    clock.now += 1800
    ob.put([(b"young", False)])
    clock.now += 1801
    assert ob.expire() == 2
    assert [e.payload for e in ob.pending(10)] == [b"young"]
    assert ob.counters["expired"] == 2
    assert ob.oldest_age_s() == 1801


def test_quota_drops_oldest_normal_events_first_and_keeps_anomalies(tmp_path: Path):
    ob = open_outbox(tmp_path, Clock(), quota_bytes=2000)
    for i in range(5):
        ob.put([(f"flag{i}".encode() * 20, True)])
    for i in range(30):
        ob.put([(f"evt{i:02d}".encode() * 10, False)])
    kept = [e.payload for e in ob.pending(100)]
    assert ob.size_bytes <= 2000
    assert sum(p.startswith(b"flag") for p in kept) == 5  # every anomaly kept
    normal = [p for p in kept if p.startswith(b"evt")]
    assert normal and normal[-1].startswith(b"evt29")  # the newest survive
    assert ob.counters["dropped_quota"] == 30 - len(normal)
    assert ob.counters["dropped_quota_anomaly"] == 0


def test_anomalies_are_dropped_only_when_nothing_else_is_left(tmp_path: Path):
    ob = open_outbox(tmp_path, Clock(), quota_bytes=600)
    for i in range(10):
        ob.put([(f"flag{i}".encode() * 10, True)])
    assert ob.size_bytes <= 600
    assert ob.counters["dropped_quota_anomaly"] > 0
    assert ob.pending(100)[-1].payload.startswith(b"flag9")


def test_a_second_process_on_the_same_outbox_gets_a_clear_error(tmp_path: Path):
    import pytest

    from edge.outbox.store import OutboxError

    first = open_outbox(tmp_path, Clock())
    with pytest.raises(OutboxError, match="another edge process"):
        open_outbox(tmp_path, Clock())
    first.close()


def test_entries_written_after_a_drain_or_behind_an_unacked_one_are_still_found(tmp_path: Path):
    ob = open_outbox(tmp_path, Clock())
    first = ob.put([(b"a1", True), (b"n1", False), (b"n2", False)])
    assert len(ob.pending(10)) == 3
    ob.ack([first[0], first[2]])  # anomalies drained; n1 (older) left behind n2's acknowledgement
    assert [e.payload for e in ob.pending(10)] == [b"n1"]
    ob.put([(b"a2", True), (b"n3", False)])
    assert [e.payload for e in ob.pending(10)] == [b"a2", b"n1", b"n3"]
    ob.ack([e.key for e in ob.pending(10)])
    ob.put([(b"n4", False)])
    assert [e.payload for e in ob.pending(10)] == [b"n4"] and ob.oldest_age_s() == 0.0


def test_an_outbox_an_older_edge_filled_is_relayed_as_it_is_flags_inside_their_events(tmp_path: Path):
    """The stored format did not change when flags stopped travelling twice: an upgraded edge reads
    the flagged events (class ``a``) an older one left, and sends each once, its flags inside it."""
    event = new_event(
        pb.EVENT_KIND_DECISION,
        FrameContext("FAC-001", "cam-1", 3, 1e9, ModelInfo("v1", "onnxruntime", "int8")),
        "t-1",
    )
    event.anomalies.append(anomaly(event, "damaged", pb.SEVERITY_CRITICAL, 0.95, {}, 1e9))
    older = open_outbox(tmp_path, Clock())
    older.put([(event.SerializeToString(), True)])  # what an older edge wrote
    older.close()
    upgraded = open_outbox(tmp_path, Clock())
    [entry] = upgraded.pending(10)
    outgoing = wire.read(entry.payload)
    batch = pb.DetectionBatch.FromString(wire.batch_bytes("b-1", [outgoing]))
    assert entry.anomaly and outgoing.event_id == event.event_id
    assert list(batch.events) == [event] and batch.events[0].anomalies[0].kind == "damaged"
