"""The batch controller grows batches when frames queue up and backs off when latency nears the budget."""

from __future__ import annotations

from edge.batching.controller import BatchController


def cost(n: int) -> float:
    """A CPU-like engine: 6 ms fixed + 4 ms per frame."""
    return 6.0 + 4.0 * n


def test_backlog_grows_the_batch_until_the_predicted_time_nears_the_deadline():
    ctl = BatchController(budget_ms=200, deadline_ms=45, max_batch=32)
    for _ in range(100):
        n = ctl.limit
        ctl.observe(n, cost(n), 2.0, [30.0] * n, backlog=10)
    assert ctl.limit == 7  # 6 + 4*7 = 34 <= 0.8*45; 8 would predict 38 > 36
    assert ctl.predict_ms(ctl.limit) <= 0.8 * 45


def test_latency_over_budget_halves_the_batch_and_the_wait():
    ctl = BatchController(budget_ms=200, deadline_ms=45, max_batch=32)
    ctl.limit, ctl.wait_ms = 8, 10.0
    for _ in range(3):
        ctl.observe(8, cost(8), 2.0, [195.0] * 8, backlog=0)
    assert ctl.limit == 4 and ctl.wait_ms == 5.0 and ctl.decreases == 1


def test_an_engine_slower_than_the_deadline_keeps_batches_at_one():
    ctl = BatchController(budget_ms=200, deadline_ms=45, max_batch=16)
    for _ in range(50):
        ctl.observe(ctl.limit, 60.0 * ctl.limit, 1.0, [80.0], backlog=5)
    assert ctl.limit == 1


def test_idle_partial_batches_learn_to_wait_a_little_for_other_cameras():
    ctl = BatchController(budget_ms=200, deadline_ms=45, max_batch=8, max_wait_ms=6)
    ctl.limit = 3
    for _ in range(20):
        ctl.observe(1, cost(1), 1.0, [20.0], backlog=0)
    assert ctl.wait_ms == 6
    # The wait never eats more than half of the oldest frame's remaining slack.
    assert ctl.fill_wait_s(oldest_age_ms=180) < ctl.fill_wait_s(oldest_age_ms=0)
    assert ctl.fill_wait_s(oldest_age_ms=200) == 0.0


def test_one_slow_first_call_of_a_new_batch_size_does_not_rule_that_size_out():
    ctl = BatchController(budget_ms=200, deadline_ms=45, max_batch=8)
    seen: set[int] = set()
    for _ in range(150):
        n = ctl.limit
        first = n not in seen
        seen.add(n)
        ctl.observe(n, 400.0 if first and n > 1 else 4.0 + 2.0 * n, 1.0, [40.0] * n, backlog=8)
    assert ctl.limit >= 4  # GPU-like: kernels autotuned on each new shape, then fast


def test_latency_from_queueing_on_a_gpu_grows_the_batch_instead_of_halving_it():
    ctl = BatchController(budget_ms=100, deadline_ms=60, max_batch=256)
    ctl.limit = 8
    for _ in range(200):
        n = ctl.limit
        ctl.observe(n, 1.0 + 0.04 * n, 0.3 * n / 8, [95.0] * n, backlog=40)  # 64 cameras waiting
    assert ctl.limit >= 64 and ctl.decreases == 0
