"""The promotion gate: may a candidate model replace production?

Pure comparison of two evaluations (as produced by ``model_lifecycle.metrics.EvalReport.as_dict``:
``condition_accuracy``, ``map50``, ``per_condition[class] = {truth, recall, ...}``) on two sets:
the frozen test set (the distribution the model was built for) and the recent verified set (what
the facilities see now). A candidate passes only if it

- is strictly better than production on the recent verified set (the reason it exists),
- is not worse than production on the frozen test set beyond ``frozen_tolerance`` (fixing today's
  drift must not break what already worked; exactly "beating" a saturated test set is noise),
- loses no more than ``class_tolerance`` recall on any class with enough support, on either set,
- keeps INT8 parity (the edge runs INT8).
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class GatePolicy:
    metric: str = "condition_accuracy"
    frozen_tolerance: float = 0.005
    min_recent_gain: float = 0.0
    class_tolerance: float = 0.05
    min_class_support: int = 20


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reasons: list[str]
    comparisons: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> str:
        return "passed" if self.passed else "blocked: " + "; ".join(self.reasons)


def _class_regressions(
    name: str, production: Mapping[str, Any], candidate: Mapping[str, Any], policy: GatePolicy
) -> list[str]:
    reasons = []
    for cls, prod in (production.get("per_condition") or {}).items():
        cand = (candidate.get("per_condition") or {}).get(cls)
        if cand is None or int(prod.get("truth", 0)) < policy.min_class_support:
            continue
        drop = float(prod["recall"]) - float(cand["recall"])
        if drop > policy.class_tolerance:
            reasons.append(
                f"{name}: recall of '{cls}' fell {drop:.3f} ({prod['recall']:.3f} → {cand['recall']:.3f}), "
                f"more than {policy.class_tolerance}"
            )
    return reasons


def decide(
    production: Mapping[str, Mapping[str, Any]],
    candidate: Mapping[str, Mapping[str, Any]],
    int8_parity_passed: bool,
    policy: GatePolicy = GatePolicy(),
) -> GateDecision:
    """``production``/``candidate``: ``{"frozen": report, "recent": report}``; ``recent`` may be absent."""
    reasons: list[str] = []
    comparisons: list[dict[str, Any]] = []
    m = policy.metric
    frozen_p, frozen_c = float(production["frozen"][m]), float(candidate["frozen"][m])
    comparisons.append({"set": "frozen", "metric": m, "production": frozen_p, "candidate": frozen_c})
    if frozen_c < frozen_p - policy.frozen_tolerance:
        reasons.append(
            f"frozen test set: {m} {frozen_c:.4f} < production {frozen_p:.4f} - {policy.frozen_tolerance}"
        )
    reasons += _class_regressions("frozen test set", production["frozen"], candidate["frozen"], policy)
    if "recent" in production and "recent" in candidate:
        recent_p, recent_c = float(production["recent"][m]), float(candidate["recent"][m])
        comparisons.append({"set": "recent", "metric": m, "production": recent_p, "candidate": recent_c})
        if not recent_c > recent_p + policy.min_recent_gain:
            reasons.append(f"recent verified set: {m} {recent_c:.4f} does not beat production {recent_p:.4f}")
        reasons += _class_regressions(
            "recent verified set", production["recent"], candidate["recent"], policy
        )
    else:
        reasons.append("no recent verified set to compare on (no verified samples with pixels)")
    if not int8_parity_passed:
        reasons.append("INT8 parity failed (condition agreement < 0.96 or mAP drop > 1 point)")
    return GateDecision(passed=not reasons, reasons=reasons, comparisons=comparisons)
