"""Under load the live cameras' inference interval grows (frames skipped on purpose, the tracker
bridging them) and steps back once nothing was dropped for a while."""

from __future__ import annotations

import time

import pytest

from edge.backends.base import engine_class
from edge.batching.interval import IntervalController
from edge.service import EdgeService


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Windows:
    """Feeds a controller one 2-s window at a time: frames handed over, dropped, and (optionally)
    the share of the window each loop thread was busy; returns whether the interval changed."""

    def __init__(self, ctl: IntervalController, clock: Clock) -> None:
        self.ctl, self.clock = ctl, clock
        self.handed = self.dropped = 0
        self.busy = [0.0, 0.0]

    def __call__(self, handed: int, dropped: int, busy: tuple[float, float] | None = None) -> bool:
        self.clock.now += 2
        self.handed, self.dropped = self.handed + handed, self.dropped + dropped
        if busy is None:
            return self.ctl.observe(self.handed, self.dropped)
        self.busy = [total + 2 * share for total, share in zip(self.busy, busy, strict=True)]
        return self.ctl.observe(self.handed, self.dropped, tuple(self.busy))


def test_drops_raise_the_interval_to_its_limit_and_calm_lowers_it_step_by_step():
    clock = Clock()
    ctl = IntervalController(max_interval=3, window_s=2, raise_share=0.05, calm_s=10, clock=clock)
    window = Windows(ctl, clock)

    assert window(60, 30) and ctl.extra == 1
    assert window(60, 10) and ctl.extra == 2
    assert not window(60, 10) and ctl.extra == 2  # at the limit (interval 3)
    assert not window(60, 1) and ctl.extra == 2  # a few drops: not calm yet
    for _ in range(4):
        assert not window(60, 0)
    assert window(60, 0) and ctl.extra == 1  # 10 s without a drop
    assert not window(60, 2)  # under 5 %: no raise, but the calm starts again


def test_a_step_down_that_brings_drops_back_doubles_the_wait_before_the_next_one():
    clock = Clock()
    ctl = IntervalController(
        max_interval=3, window_s=2, raise_share=0.05, calm_s=10, max_calm_s=40, clock=clock
    )
    window = Windows(ctl, clock)

    def calm_until_step_down() -> float:
        start = clock.now
        while not window(60, 0):
            pass
        return clock.now - start

    assert window(60, 30) and ctl.extra == 1
    for wait in (10, 20, 40, 40):  # each step down fails at once: 10 s, then twice as long, capped
        assert calm_until_step_down() == wait and ctl.extra == 0
        assert window(60, 20) and ctl.extra == 1
    assert calm_until_step_down() == 40 and ctl.extra == 0
    for _ in range(20):  # the step down held (40 s and more without drops)
        assert not window(60, 0)
    assert window(60, 20) and ctl.wait_s == 10  # load that comes back later: the plain wait again


def test_a_step_down_is_not_tried_while_the_loop_would_not_keep_up_at_the_lower_interval():
    clock = Clock()
    ctl = IntervalController(max_interval=3, window_s=2, raise_share=0.05, calm_s=10, clock=clock)
    window = Windows(ctl, clock)  # busy: shares of the batching thread and of the loop's thread

    assert window(60, 30, (0.9, 0.1)) and window(60, 30, (0.9, 0.1)) and ctl.extra == 2  # interval 3
    for _ in range(20):  # 60 % busy at interval 3 would be 90 % at 2: over the 80 % that fits
        assert not window(60, 0, (0.6, 0.1))
    assert ctl.extra == 2 and ctl.held == 4
    while not window(60, 0, (0.5, 0.1)):  # 50 % → 75 % at interval 2: tried once the stretch is calm
        pass
    assert ctl.extra == 1
    for _ in range(20):  # 45 % at interval 2 would be 90 % at 1: held
        assert not window(60, 0, (0.45, 0.1))
    assert ctl.extra == 1


@pytest.mark.timeout(90)
def test_an_edge_that_cannot_keep_up_infers_fewer_frames_of_its_live_cameras(
    edge_config, kafka_bootstrap, topic_prefix, monkeypatch
):
    slow = engine_class("test-slow")
    monkeypatch.setattr(slow, "every", 1)
    monkeypatch.setattr(slow, "delay_s", 0.08)  # about 12 inferences a second for 30 offered
    cfg = edge_config(
        [{"id": "cam-1", "source": "synthetic://seed=5&fps=30", "policy": "latest"}],
        engine={"name": "test-slow"},
        capture={"max_interval": 3},
        budgets={"fallback": False},
        transport={"kafka_bootstrap": kafka_bootstrap, "topic_prefix": topic_prefix},
    )
    service = EdgeService(cfg)
    service.start()
    try:
        reader = service.cameras["cam-1"].reader
        deadline = time.monotonic() + 30
        while reader.interval < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert reader.interval == 3
        skipped = reader.counters["skipped_interval"]
        time.sleep(1)
        assert reader.counters["skipped_interval"] > skipped
    finally:
        service.shutdown()
