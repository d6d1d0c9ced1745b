"""The watchdog's judgement: a thread is stalled only when it has work, is not waiting by design,
and has made no progress for longer than the limit."""

from __future__ import annotations

from edge.watchdog import Heartbeat, Watchdog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_thread_with_work_and_no_progress_is_stalled_once_past_the_limit() -> None:
    clock, work = Clock(), [True]
    beat = Heartbeat("inference", has_work=lambda: work[0], clock=clock)
    dog = Watchdog(stall_s=5.0, clock=clock)
    dog.watch(beat)

    clock.now += 4.9
    assert dog.stalls() == []
    clock.now += 0.2
    assert [s.component for s in dog.stalls()] == ["inference"]
    assert dog.state()["inference"]["stalled"] is True

    beat.beat()
    assert dog.stalls() == []


def test_a_thread_without_work_or_waiting_by_design_is_never_stalled() -> None:
    clock = Clock()
    no_work = Heartbeat("outbox-relay", has_work=lambda: False, clock=clock)
    backing_off = Heartbeat("camera-1", clock=clock)
    dog = Watchdog(stall_s=1.0, clock=clock)
    dog.watch(no_work, backing_off)

    with backing_off.idle():
        clock.now += 60
        assert dog.stalls() == []
    assert dog.stalls() == []  # leaving the wait counts as progress
    clock.now += 1.5
    assert [s.component for s in dog.stalls()] == ["camera-1"]
