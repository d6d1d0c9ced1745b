"""Decode the detector's dense maps into `Detection`s (numpy only, shared by every engine).

Engine contract (ONNX Runtime, torch, TensorRT): input `images` float32 (B, 3, h, w) from
`preprocess.preprocess`; outputs, each (B, C, h/16, w/16) float32:

- `objectness` (C=1): logit that the cell holds a package centre;
- `boxes` (C=4): the cell's box as normalised (x1, y1, x2, y2) in [0, 1] of the frame;
- `condition` (C=5): logits over `contract.frames.CONDITIONS`;
- `embedding` (C=E): appearance features, averaged over the cells inside each box and L2-normalised.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import numpy as np

from contract.frames import Box, Detection

INPUT_NAME = "images"
OUTPUT_NAMES: tuple[str, ...] = ("objectness", "boxes", "condition", "embedding")
DEFAULT_SCORE_THRESHOLD = 0.3
DEFAULT_IOU_THRESHOLD = 0.5
MAX_CANDIDATES = 300


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression of one image; returns kept indices, highest score first."""
    order = np.argsort(-scores, kind="stable")
    keep = _batched_nms(boxes[order][None], np.ones((1, len(order)), dtype=bool), iou_threshold)[0]
    return order[keep].astype(np.int64)


@functools.lru_cache(maxsize=16)
def _cell_centres(n: int) -> list[float]:
    """Normalised centres of `n` grid cells along one axis (cached: the grid is fixed per model)."""
    return [float(c) for c in (np.arange(n) + 0.5) / n]


def decode(
    raw: Mapping[str, np.ndarray],
    frame_sizes: Sequence[tuple[int, int]],
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
    max_detections: int = 100,
) -> list[list[Detection]]:
    """Dense maps -> detections per image, boxes in the pixels of each frame.

    frame_sizes: (height, width) of each original frame, i.e. `frame.image.shape[:2]`.

    The whole batch at once (one candidate selection, one NMS, one embedding pooling): per image
    and detection, numpy calls cost more than their arithmetic, and at 64 cameras this ran for
    every frame on the inference thread (docs/benchmarks.md).
    """
    obj = np.asarray(raw["objectness"], dtype=np.float32)
    boxes = np.asarray(raw["boxes"], dtype=np.float32)
    cond = np.asarray(raw["condition"], dtype=np.float32)
    emb = np.asarray(raw["embedding"], dtype=np.float32)
    if len(frame_sizes) != obj.shape[0]:
        raise ValueError(f"{len(frame_sizes)} frame sizes for a batch of {obj.shape[0]}")
    n, _, h, w = obj.shape
    scores = sigmoid(obj.reshape(n, h * w))
    cands = _candidates(scores, score_threshold)
    k = max((len(c) for c in cands), default=0)
    out: list[list[Detection]] = [[] for _ in range(n)]
    if k == 0:
        return out
    # (n, k) candidate cells per image, best score first (stable: ties keep cell order), padded
    cells = np.zeros((n, k), dtype=np.int64)
    valid = np.zeros((n, k), dtype=bool)
    for b, c in enumerate(cands):
        order = c[np.argsort(-scores[b, c], kind="stable")]
        cells[b, : len(c)], valid[b, : len(c)] = order, True
    rows = np.arange(n)[:, None]
    flat_boxes = np.clip(boxes.reshape(n, 4, h * w), 0.0, 1.0)
    cand_boxes = flat_boxes.transpose(0, 2, 1)[rows, cells]  # (n, k, 4)
    keep = _batched_nms(cand_boxes, valid, iou_threshold)
    keep &= np.cumsum(keep, axis=1) <= max_detections
    img, rank = np.nonzero(keep)
    if not img.size:
        return out
    cell = cells[img, rank]
    nb = cand_boxes[img, rank]  # (d, 4) normalised
    probs = softmax(cond.reshape(n, cond.shape[1], h * w)[img, :, cell], axis=1).astype(np.float32)
    pooled = _pool_embeddings(emb, img, nb, cell)
    sizes = np.asarray(frame_sizes, dtype=np.float32).reshape(n, 2)[img]  # (d, [h, w])
    scale = np.stack([sizes[:, 1], sizes[:, 0], sizes[:, 1], sizes[:, 0]], axis=1)
    pixel = (nb * scale).tolist()
    for j, (b, x) in enumerate(zip(img.tolist(), scores[img, cell].tolist(), strict=True)):
        x1, y1, x2, y2 = pixel[j]
        out[b].append(Detection(Box(x1, y1, x2, y2), x, probs[j], pooled[j]))
    return out


def _candidates(scores: np.ndarray, score_threshold: float) -> list[np.ndarray]:
    """Cells at or above the threshold per image (at most MAX_CANDIDATES, the best)."""
    img, cell = np.nonzero(scores >= score_threshold)
    bounds = np.searchsorted(img, np.arange(scores.shape[0] + 1))
    out = []
    for b in range(scores.shape[0]):
        c = cell[bounds[b] : bounds[b + 1]]
        if c.size > MAX_CANDIDATES:
            c = c[np.argsort(-scores[b, c])[:MAX_CANDIDATES]]
        out.append(c)
    return out


def _batched_nms(boxes: np.ndarray, valid: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS of every image at once over (n, k, 4) boxes sorted by score; (n, k) kept."""
    x1, y1, x2, y2 = (boxes[..., i] for i in range(4))
    ix = np.clip(
        np.minimum(x2[:, :, None], x2[:, None, :]) - np.maximum(x1[:, :, None], x1[:, None, :]), 0, None
    )
    iy = np.clip(
        np.minimum(y2[:, :, None], y2[:, None, :]) - np.maximum(y1[:, :, None], y1[:, None, :]), 0, None
    )
    inter = ix * iy
    area = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = area[:, :, None] + area[:, None, :] - inter
    overlaps = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0) > iou_threshold
    keep = np.zeros_like(valid)
    suppressed = ~valid
    for r in range(valid.shape[1]):
        kept = ~suppressed[:, r]
        if not kept.any():
            continue
        keep[:, r] = kept
        suppressed |= kept[:, None] & overlaps[:, r]
    return keep


def _pool_embeddings(emb: np.ndarray, img: np.ndarray, nb: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Every detection's appearance: the mean of the cells whose centres lie in its box
    (the cell of its peak when none does), L2-normalised; (d, E)."""
    n, e, h, w = emb.shape
    cy, cx = np.asarray(_cell_centres(h)), np.asarray(_cell_centres(w))
    r0, r1 = np.searchsorted(cy, nb[:, 1], "left"), np.searchsorted(cy, nb[:, 3], "right")
    c0, c1 = np.searchsorted(cx, nb[:, 0], "left"), np.searchsorted(cx, nb[:, 2], "right")
    inside = (
        (np.arange(h)[None, :, None] >= r0[:, None, None])
        & (np.arange(h)[None, :, None] < r1[:, None, None])
        & (np.arange(w)[None, None, :] >= c0[:, None, None])
        & (np.arange(w)[None, None, :] < c1[:, None, None])
    ).reshape(-1, h * w)
    empty = ~inside.any(axis=1)
    inside[empty, cell[empty]] = True  # no centre inside: the peak cell alone
    # one batched product: each image's detections (padded to the most any image has) x its cells
    start = np.searchsorted(img, np.arange(n))
    slot = np.arange(len(img)) - start[img]
    masks = np.zeros((n, int(slot.max()) + 1, h * w), dtype=np.float32)
    masks[img, slot] = inside
    sums = np.matmul(masks, emb.reshape(n, e, h * w).transpose(0, 2, 1))[img, slot]  # (d, E)
    vec = sums / inside.sum(axis=1, keepdims=True)
    norms = np.maximum(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12)
    return (vec / norms).astype(np.float32)
