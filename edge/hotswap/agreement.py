"""How far two models agree on the same frame: matched boxes with the same condition."""

from __future__ import annotations

from contract.frames import Detection

MATCH_IOU = 0.5


def agreement(a: list[Detection], b: list[Detection]) -> float:
    """Pairs matched greedily by IoU >= 0.5 with equal condition, over the larger count (1 if both empty)."""
    if not a and not b:
        return 1.0
    pairs = sorted(
        ((da.box.iou(db.box), i, j) for i, da in enumerate(a) for j, db in enumerate(b)), reverse=True
    )
    used_a: set[int] = set()
    used_b: set[int] = set()
    agree = 0
    for iou, i, j in pairs:
        if iou < MATCH_IOU:
            break
        if i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        agree += int(a[i].condition == b[j].condition)
    return agree / max(len(a), len(b))
