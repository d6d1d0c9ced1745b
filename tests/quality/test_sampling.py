"""Stratified, deterministic sampling for verification."""

from quality.sampling import stratified_sample


def test_every_stratum_is_sampled_proportionally_and_repeatably() -> None:
    items = [(f"e{i}", "ok") for i in range(1000)] + [(f"d{i}", "wet") for i in range(7)]
    pick = stratified_sample(items, key=lambda x: x[0], stratum=lambda x: x[1], rate=0.01)
    assert sum(1 for x in pick if x[1] == "ok") == 10
    assert sum(1 for x in pick if x[1] == "wet") == 1
    again = stratified_sample(list(reversed(items)), key=lambda x: x[0], stratum=lambda x: x[1], rate=0.01)
    assert sorted(pick) == sorted(again)


def test_late_events_only_add_to_a_sample() -> None:
    items = [(f"e{i}", "ok") for i in range(400)]
    before = set(stratified_sample(items, key=lambda x: x[0], stratum=lambda x: x[1], rate=0.05))
    after = set(
        stratified_sample([*items, ("late", "ok")], key=lambda x: x[0], stratum=lambda x: x[1], rate=0.05)
    )
    assert len(before - after) <= 1  # at most the last-ranked one is displaced when the quota stays
