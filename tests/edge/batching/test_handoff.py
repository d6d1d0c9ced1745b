"""The hand-over between the inference loop's batching thread and its tracking/writing thread."""

from __future__ import annotations

import threading

from edge.batching.handoff import Handoff


def producer(handoff: Handoff[int], stop: threading.Event, made: list[int], limit: int) -> threading.Thread:
    def run() -> None:
        n = 0
        while not stop.is_set() and n < limit:
            handoff.checkpoint(stop)
            made.append(n)
            if not handoff.put(n):
                break
            n += 1
        handoff.end()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_pause_leaves_nothing_in_flight_until_resumed() -> None:
    handoff: Handoff[int] = Handoff(depth=1)
    stop, made, consumed = threading.Event(), [], []
    thread = producer(handoff, stop, made, limit=10_000)
    while len(consumed) < 5:
        if (item := handoff.get(1.0)) is not None:
            consumed.append(item)
    handoff.pause(consumed.append)
    # parked: everything it made was handed over, and it makes nothing more while paused
    assert consumed == made == list(range(len(made)))
    assert handoff.get(0.2) is None and len(made) == len(consumed)
    handoff.resume()
    target = len(consumed) + 5
    while len(consumed) < target:
        if (item := handoff.get(1.0)) is not None:
            consumed.append(item)
    stop.set()
    while not handoff.finished():
        if (item := handoff.get(0.1)) is not None:
            consumed.append(item)
    thread.join(5)
    assert consumed == made == list(range(len(made)))


def test_a_closed_consumer_releases_a_producer_waiting_for_room() -> None:
    handoff: Handoff[int] = Handoff(depth=1)
    stop, made = threading.Event(), []
    thread = producer(handoff, stop, made, limit=3)
    while len(made) < 2:  # the first fills the hand-over, the second waits for room
        threading.Event().wait(0.01)
    handoff.close()
    thread.join(5)
    assert not thread.is_alive() and made == [0, 1] and handoff.get(0) == 0


def test_a_pause_after_the_producer_ended_returns_at_once() -> None:
    handoff: Handoff[int] = Handoff(depth=2)
    stop, made, consumed = threading.Event(), [], []
    producer(handoff, stop, made, limit=2).join(5)
    handoff.pause(consumed.append)
    assert consumed == [0, 1] and handoff.finished()
