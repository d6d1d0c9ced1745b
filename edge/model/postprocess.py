"""Decode the detector's dense maps into `Detection`s (numpy only, shared by every engine).

Engine contract (ONNX Runtime, torch, TensorRT): input `images` float32 (B, 3, h, w) from
`preprocess.preprocess`; outputs, each (B, C, h/16, w/16) float32:

- `objectness` (C=1): logit that the cell holds a package centre;
- `boxes` (C=4): the cell's box as normalised (x1, y1, x2, y2) in [0, 1] of the frame;
- `condition` (C=5): logits over `contract.frames.CONDITIONS`;
- `embedding` (C=E): appearance features, averaged over the cells inside each box and L2-normalised.
"""

from __future__ import annotations

import bisect
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


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (4,) xyxy box with each row of (N, 4)."""
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    area = max(box[2] - box[0], 0) * max(box[3] - box[1], 0)
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    union = area + areas - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices, highest score first."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        if order.size == 1:
            break
        rest = order[1:]
        order = rest[box_iou(boxes[i], boxes[rest]) <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


@functools.lru_cache(maxsize=16)
def _cell_centres(n: int) -> list[float]:
    """Normalised centres of `n` grid cells along one axis (cached: the grid is fixed per model)."""
    return [float(c) for c in (np.arange(n) + 0.5) / n]


def pool_embedding(embedding: np.ndarray, box: np.ndarray, fallback_cell: tuple[int, int]) -> np.ndarray:
    """Mean of the (E, h, w) embedding over cells whose centres lie in the normalised box, L2-normalised."""
    _, h, w = embedding.shape
    cy, cx = _cell_centres(h), _cell_centres(w)
    x1, y1, x2, y2 = (float(v) for v in box)
    r0, r1 = bisect.bisect_left(cy, y1), bisect.bisect_right(cy, y2)
    c0, c1 = bisect.bisect_left(cx, x1), bisect.bisect_right(cx, x2)
    if r1 > r0 and c1 > c0:
        vec = embedding[:, r0:r1, c0:c1].mean(axis=(1, 2))
    else:
        vec = embedding[:, fallback_cell[0], fallback_cell[1]]
    return (vec / max(float(np.linalg.norm(vec)), 1e-12)).astype(np.float32)


def decode(
    raw: Mapping[str, np.ndarray],
    frame_sizes: Sequence[tuple[int, int]],
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
    max_detections: int = 100,
) -> list[list[Detection]]:
    """Dense maps -> detections per image, boxes in the pixels of each frame.

    frame_sizes: (height, width) of each original frame, i.e. `frame.image.shape[:2]`.
    """
    obj = np.asarray(raw["objectness"], dtype=np.float32)
    boxes = np.asarray(raw["boxes"], dtype=np.float32)
    cond = np.asarray(raw["condition"], dtype=np.float32)
    emb = np.asarray(raw["embedding"], dtype=np.float32)
    if len(frame_sizes) != obj.shape[0]:
        raise ValueError(f"{len(frame_sizes)} frame sizes for a batch of {obj.shape[0]}")
    w = obj.shape[3]
    out: list[list[Detection]] = []
    for b, (fh, fw) in enumerate(frame_sizes):
        scores = sigmoid(obj[b, 0].reshape(-1))
        cand = np.flatnonzero(scores >= score_threshold)
        if cand.size > MAX_CANDIDATES:
            cand = cand[np.argsort(-scores[cand])[:MAX_CANDIDATES]]
        cand_boxes = np.clip(boxes[b].reshape(4, -1)[:, cand].T, 0.0, 1.0)
        kept = cand[nms(cand_boxes, scores[cand], iou_threshold)][:max_detections]
        probs = softmax(cond[b].reshape(cond.shape[1], -1)[:, kept].T, axis=1)
        dets = []
        for j, cell in enumerate(kept):
            nb = np.clip(boxes[b].reshape(4, -1)[:, cell], 0.0, 1.0)
            dets.append(
                Detection(
                    box=Box(float(nb[0] * fw), float(nb[1] * fh), float(nb[2] * fw), float(nb[3] * fh)),
                    score=float(scores[cell]),
                    condition_probs=probs[j].astype(np.float32),
                    embedding=pool_embedding(emb[b], nb, divmod(int(cell), w)),
                )
            )
        out.append(dets)
    return out
