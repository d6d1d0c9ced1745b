"""Detection and condition metrics over decoded detections (numpy only).

- `map50`: class-agnostic average precision at IoU 0.5 (all-point interpolation, VOC 2010+),
  computed from every detection above a low score floor;
- `condition_accuracy`: on packages matched (IoU >= 0.5, greedy by score) by a detection at the
  operating threshold, the share whose arg-max condition equals the truth;
- `condition_map50`: the same AP with the arg-max condition as the class, averaged over conditions;
- per-condition precision/recall on matched packages, and detection precision/recall.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from contract.frames import Detection, PackageTruth
from contract.vocabulary import CONDITIONS

IOU_MATCH = 0.5


@dataclass
class EvalReport:
    frames: int
    packages: int
    map50: float
    condition_map50: float
    condition_accuracy: float
    matched: int
    precision: float
    recall: float
    per_condition: dict[str, dict[str, float]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "frames": self.frames,
            "packages": self.packages,
            "map50": round(self.map50, 4),
            "condition_map50": round(self.condition_map50, 4),
            "condition_accuracy": round(self.condition_accuracy, 4),
            "matched": self.matched,
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "per_condition": {
                c: {k: _json_number(v) for k, v in d.items()} for c, d in self.per_condition.items()
            },
        }


def _json_number(v: float | int) -> float | int | None:
    """Round floats for reports; NaN (a class with no truth) becomes null."""
    if isinstance(v, float):
        return None if np.isnan(v) else round(v, 4)
    return v


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def match(
    dets: Sequence[Detection], truths: Sequence[PackageTruth] | Sequence[Detection], iou: float = IOU_MATCH
) -> list[int]:
    """Greedy by score: for each detection the index of the truth (or reference detection) it matches, or -1."""
    if not dets:
        return []
    d = np.stack([x.box.as_array() for x in dets])
    t = np.stack([x.box.as_array() for x in truths]) if truths else np.zeros((0, 4), np.float32)
    ious = _iou_matrix(d, t)
    taken = np.zeros(len(truths), dtype=bool)
    result = [-1] * len(dets)
    for i in np.argsort([-x.score for x in dets], kind="stable"):
        if not len(truths):
            break
        cand = np.where(taken, -1.0, ious[i])
        j = int(np.argmax(cand))
        if cand[j] >= iou:
            taken[j] = True
            result[i] = j
    return result


def average_precision(scores: np.ndarray, tp: np.ndarray, n_truth: int) -> float:
    if n_truth == 0:
        return float("nan")
    if scores.size == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    tp = tp[order].astype(np.float64)
    ctp, cfp = np.cumsum(tp), np.cumsum(1 - tp)
    recall = ctp / n_truth
    precision = ctp / np.maximum(ctp + cfp, 1e-12)
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([1.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    idx = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


def evaluate_detections(
    detections: Sequence[Sequence[Detection]],
    truths: Sequence[Sequence[PackageTruth]],
    score_threshold: float,
) -> EvalReport:
    """Metrics of per-frame detections (decoded with a low score floor) against the simulator's truth."""
    all_scores, all_tp = [], []
    cls_scores: dict[int, list[float]] = {k: [] for k in range(len(CONDITIONS))}
    cls_tp: dict[int, list[bool]] = {k: [] for k in range(len(CONDITIONS))}
    n_truth_cls = np.zeros(len(CONDITIONS), dtype=np.int64)
    confusion = np.zeros((len(CONDITIONS), len(CONDITIONS)), dtype=np.int64)  # truth x predicted
    n_truth = op_tp = op_dets = 0
    for dets, gts in zip(detections, truths, strict=True):
        n_truth += len(gts)
        gt_cls = [CONDITIONS.index(g.condition) for g in gts]
        for c in gt_cls:
            n_truth_cls[c] += 1
        m = match(dets, gts)
        for det, j in zip(dets, m, strict=True):
            all_scores.append(det.score)
            all_tp.append(j >= 0)
            pred = int(np.argmax(det.condition_probs))
            cls_scores[pred].append(det.score)
            cls_tp[pred].append(j >= 0 and gt_cls[j] == pred)
        # operating point: only detections above the threshold, re-matched among themselves
        op = [d for d in dets if d.score >= score_threshold]
        op_dets += len(op)
        for det, j in zip(op, match(op, gts), strict=True):
            if j >= 0:
                op_tp += 1
                confusion[gt_cls[j], int(np.argmax(det.condition_probs))] += 1
    ap = average_precision(np.asarray(all_scores), np.asarray(all_tp, dtype=bool), n_truth)
    cls_ap = [
        average_precision(np.asarray(cls_scores[k]), np.asarray(cls_tp[k], dtype=bool), int(n_truth_cls[k]))
        for k in range(len(CONDITIONS))
    ]
    per_condition = {}
    for k, name in enumerate(CONDITIONS):
        tp_k = int(confusion[k, k])
        per_condition[name] = {
            "truth": int(confusion[k].sum()),
            "predicted": int(confusion[:, k].sum()),
            "precision": tp_k / max(int(confusion[:, k].sum()), 1),
            "recall": tp_k / max(int(confusion[k].sum()), 1),
            "ap50": cls_ap[k],
        }
    valid_ap = [a for a in cls_ap if not np.isnan(a)]
    return EvalReport(
        frames=len(truths),
        packages=n_truth,
        map50=ap if not np.isnan(ap) else 0.0,
        condition_map50=float(np.mean(valid_ap)) if valid_ap else 0.0,
        condition_accuracy=float(np.trace(confusion) / max(confusion.sum(), 1)),
        matched=int(confusion.sum()),
        precision=op_tp / max(op_dets, 1),
        recall=op_tp / max(n_truth, 1),
        per_condition=per_condition,
    )
