from __future__ import annotations

import numpy as np

from contract.frames import Box, Detection, PackageTruth
from model_lifecycle.metrics import average_precision, evaluate_detections


def truth(box: tuple[float, float, float, float], condition: str) -> PackageTruth:
    return PackageTruth("p", "sku", "box", condition, Box(*box), "lane-a", "lane-a")


def det(box: tuple[float, float, float, float], score: float, condition: int) -> Detection:
    probs = np.full(5, 0.05, np.float32)
    probs[condition] = 0.8
    return Detection(Box(*box), score, probs, np.ones(4, np.float32) / 2)


def test_average_precision_of_a_known_ranking() -> None:
    # ranked TP, FP, TP over 2 truths: precision 1 at recall 0.5, 2/3 at recall 1
    ap = average_precision(np.array([0.9, 0.8, 0.7]), np.array([True, False, True]), 2)
    assert abs(ap - (0.5 * 1 + 0.5 * 2 / 3)) < 1e-9


def test_evaluate_detections_counts_matches_conditions_and_threshold() -> None:
    truths = [[truth((0, 0, 10, 10), "ok"), truth((20, 0, 30, 10), "wet")], [truth((0, 0, 10, 10), "torn")]]
    dets = [
        [det((0, 0, 10, 10), 0.9, 0), det((21, 0, 31, 10), 0.8, 3), det((50, 50, 60, 60), 0.2, 0)],
        [det((0, 0, 10, 9), 0.7, 0)],  # found, but called ok instead of torn
    ]
    r = evaluate_detections(dets, truths, score_threshold=0.3)
    assert (r.frames, r.packages, r.matched) == (2, 3, 3)
    assert r.map50 == 1.0  # the only false positive ranks last
    assert abs(r.condition_accuracy - 2 / 3) < 1e-9
    assert (r.precision, r.recall) == (1.0, 1.0)
    assert r.per_condition["torn"]["recall"] == 0.0 and r.per_condition["ok"]["precision"] == 0.5
    assert r.as_dict()["per_condition"]["crushed"]["ap50"] is None  # no truth of that class
