"""The promotion gate between a candidate and production."""

from quality.gate import GatePolicy, decide


def report(accuracy: float, recalls: dict[str, float] | None = None, support: int = 50) -> dict:
    recalls = recalls or {}
    return {
        "condition_accuracy": accuracy,
        "map50": 0.9,
        "per_condition": {c: {"truth": support, "recall": r} for c, r in recalls.items()},
    }


def test_better_candidate_passes() -> None:
    production = {"frozen": report(0.95, {"ok": 0.97}), "recent": report(0.88)}
    candidate = {"frozen": report(0.951, {"ok": 0.96}), "recent": report(0.95)}
    decision = decide(production, candidate, int8_parity_passed=True)
    assert decision.passed, decision.reasons
    assert {c["set"] for c in decision.comparisons} == {"frozen", "recent"}


def test_worse_candidate_is_blocked_with_every_reason() -> None:
    production = {"frozen": report(0.95, {"wet": 0.9}), "recent": report(0.90)}
    candidate = {"frozen": report(0.90, {"wet": 0.7}), "recent": report(0.89)}
    decision = decide(production, candidate, int8_parity_passed=False)
    assert not decision.passed
    text = " ".join(decision.reasons)
    assert "frozen test set: condition_accuracy" in text
    assert "recall of 'wet'" in text
    assert "recent verified set" in text
    assert "INT8 parity" in text


def test_class_with_little_support_is_not_judged_and_missing_recent_set_blocks() -> None:
    production = {"frozen": report(0.95, {"open": 0.9}, support=3)}
    candidate = {"frozen": report(0.95, {"open": 0.2}, support=3)}
    decision = decide(production, candidate, True, GatePolicy(min_class_support=20))
    assert decision.reasons == ["no recent verified set to compare on (no verified samples with pixels)"]
