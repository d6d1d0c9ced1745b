"""Detection, condition, embedding and distillation losses on the dense maps.

Targets are CenterNet-like: each package puts a Gaussian (sigma = size/6, at least half a cell) on
the grid, peaking at exactly 1 on the cell that holds its centre. Objectness uses CenterNet's
penalty-reduced focal loss (so neighbours of a centre are only mildly pushed down and NMS removes
them); box (GIoU + L1) and condition (cross-entropy) are trained on every cell inside the package
weighted by the Gaussian; the embedding is pooled over the package's cells and trained with a
supervised contrastive loss on SKU identity, which makes it usable for SKU matching and drift.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

MIN_WEIGHT = 0.1
L1_WEIGHT = 5.0
GIOU_WEIGHT = 2.0
EMBED_WEIGHT = 0.2
TEMPERATURE = 0.1


def build_targets(boxes: Tensor, valid: Tensor, grid: tuple[int, int]) -> dict[str, Tensor]:
    """boxes (B, M, 4) normalised xyxy, valid (B, M) -> dense targets on the (h, w) grid, flattened to N."""
    h, w = grid
    dev = boxes.device
    cy = ((torch.arange(h, device=dev) + 0.5) / h).repeat_interleave(w)
    cx = ((torch.arange(w, device=dev) + 0.5) / w).repeat(h)
    x1, y1, x2, y2 = (boxes[..., i : i + 1] for i in range(4))  # (B, M, 1)
    bcx, bcy = (x1 + x2) / 2, (y1 + y2) / 2
    sx = ((x2 - x1) / 6).clamp(min=0.5 / w)
    sy = ((y2 - y1) / 6).clamp(min=0.5 / h)
    gauss = torch.exp(-((cx - bcx) ** 2) / (2 * sx**2) - ((cy - bcy) ** 2) / (2 * sy**2))
    inside = (cx >= x1) & (cx <= x2) & (cy >= y1) & (cy <= y2)
    col = (bcx * w).long().clamp(0, w - 1)
    row = (bcy * h).long().clamp(0, h - 1)
    peak_idx = row * w + col  # (B, M, 1)
    inside = inside.scatter(2, peak_idx, True) & valid[..., None]
    gauss = (gauss * inside).scatter(2, peak_idx, 1.0) * valid[..., None]
    heat, assign = gauss.max(dim=1)
    peak = torch.zeros_like(heat).scatter_add(1, peak_idx[..., 0], valid.float()) > 0
    return {"heat": heat, "assign": assign, "peak": peak, "inside": inside}


def focal_loss(logits: Tensor, heat: Tensor, peak: Tensor) -> Tensor:
    """CenterNet focal loss (alpha=2, beta=4), normalised by the number of packages."""
    p = logits.sigmoid()
    pos = -((1 - p) ** 2) * F.logsigmoid(logits) * peak
    neg = -((1 - heat) ** 4) * p**2 * F.logsigmoid(-logits) * ~peak
    return (pos.sum() + neg.sum()) / peak.sum().clamp(min=1)


def giou(a: Tensor, b: Tensor) -> Tensor:
    """Generalised IoU of matching rows of (..., 4) xyxy boxes."""
    area_a = (a[..., 2] - a[..., 0]).clamp(min=0) * (a[..., 3] - a[..., 1]).clamp(min=0)
    area_b = (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = area_a + area_b - inter
    iou = inter / union.clamp(min=1e-9)
    hull = (
        (torch.maximum(a[..., 2:], b[..., 2:]) - torch.minimum(a[..., :2], b[..., :2])).clamp(min=0).prod(-1)
    )
    return iou - (hull - union) / hull.clamp(min=1e-9)


def supcon_loss(z: Tensor, labels: Tensor) -> Tensor:
    """Supervised contrastive loss over L2-normalised rows; anchors without a positive are skipped."""
    n = z.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    pos = (labels[:, None] == labels[None, :]) & ~eye
    has_pos = pos.any(1)
    if not has_pos.any():
        return z.sum() * 0.0
    sim = (z @ z.T / TEMPERATURE).masked_fill(eye, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    per_anchor = -(log_prob.masked_fill(~pos, 0.0).sum(1)) / pos.sum(1).clamp(min=1)
    return per_anchor[has_pos].mean()


def detection_loss(outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """Task loss of one batch; returns the total under `loss` and each term for logging."""
    obj = outputs["objectness"].float()
    b, _, h, w = obj.shape
    t = build_targets(batch["boxes"], batch["valid"], (h, w))
    l_obj = focal_loss(obj.reshape(b, -1), t["heat"], t["peak"])

    weight = t["heat"] * (t["heat"] >= MIN_WEIGHT)
    wsum = weight.sum().clamp(min=1e-6)
    gt_boxes = batch["boxes"].gather(1, t["assign"][..., None].expand(-1, -1, 4))
    pred_boxes = outputs["boxes"].float().reshape(b, 4, -1).transpose(1, 2)
    box_terms = GIOU_WEIGHT * (1 - giou(pred_boxes, gt_boxes)) + L1_WEIGHT * (
        pred_boxes - gt_boxes
    ).abs().sum(-1)
    l_box = (box_terms * weight).sum() / wsum

    cond = outputs["condition"].float().reshape(b, outputs["condition"].shape[1], -1)
    gt_cond = batch["conditions"].gather(1, t["assign"])
    l_cond = (F.cross_entropy(cond, gt_cond, reduction="none") * weight).sum() / wsum

    emb = outputs["embedding"].float().reshape(b, outputs["embedding"].shape[1], -1).transpose(1, 2)
    inside = t["inside"].float()
    pooled = inside @ emb / inside.sum(-1, keepdim=True).clamp(min=1)  # (B, M, E)
    z = F.normalize(pooled[batch["valid"]], dim=-1)
    l_emb = supcon_loss(z, batch["skus"][batch["valid"]])

    total = l_obj + l_box + l_cond + EMBED_WEIGHT * l_emb
    return {"loss": total, "obj": l_obj, "box": l_box, "cond": l_cond, "embed": l_emb}


def distillation_loss(
    student: dict[str, Tensor], teacher: dict[str, Tensor], temperature: float = 2.0
) -> Tensor:
    """Match a teacher's dense maps: objectness (BCE to its probabilities), condition logits (KL at
    temperature T, weighted by the teacher's objectness) and embedding directions (cosine)."""
    if student["embedding"].shape[1:] != teacher["embedding"].shape[1:]:
        raise ValueError(
            f"teacher maps {tuple(teacher['embedding'].shape[1:])} differ from the student's "
            f"{tuple(student['embedding'].shape[1:])}; they need the same grid and embedding size"
        )
    t_obj = teacher["objectness"].float().sigmoid()
    l_obj = F.binary_cross_entropy_with_logits(student["objectness"].float(), t_obj)
    w = t_obj[:, 0]
    t_logp = F.log_softmax(teacher["condition"].float() / temperature, dim=1)
    s_logp = F.log_softmax(student["condition"].float() / temperature, dim=1)
    kl = (t_logp.exp() * (t_logp - s_logp)).sum(1) * temperature**2
    l_cond = (kl * w).sum() / w.sum().clamp(min=1e-6)
    cos = F.cosine_similarity(student["embedding"].float(), teacher["embedding"].float(), dim=1)
    l_feat = ((1 - cos) * w).sum() / w.sum().clamp(min=1e-6)
    return l_obj + l_cond + l_feat
