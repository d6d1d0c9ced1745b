"""Preprocess, NMS and decode on hand-made inputs (numpy only, shared by every engine)."""

from __future__ import annotations

import numpy as np
import torch

from edge.model.postprocess import decode, nms
from edge.model.preprocess import preprocess, resize_rgb
from model_lifecycle.data import normalize_on_device


def test_nms_keeps_the_best_of_each_overlapping_group() -> None:
    boxes = np.array(
        [
            [0, 0, 10, 10],  # A
            [1, 1, 11, 11],  # overlaps A (IoU 0.68)
            [20, 20, 30, 30],  # B
            [0, 0, 10, 4],  # IoU 0.24 with the winner [1, 1, 11, 11]
            [21, 20, 31, 30],  # overlaps B
        ],
        dtype=np.float32,
    )
    scores = np.array([0.9, 0.95, 0.5, 0.8, 0.4], dtype=np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [1, 3, 2]
    assert nms(boxes, scores, 0.2).tolist() == [1, 2]
    assert nms(boxes[:0], scores[:0], 0.5).tolist() == []


def dense_maps(h: int = 4, w: int = 6, e: int = 3) -> dict[str, np.ndarray]:
    obj = np.full((1, 1, h, w), -10.0, np.float32)
    boxes = np.zeros((1, 4, h, w), np.float32)
    cond = np.zeros((1, 5, h, w), np.float32)
    emb = np.zeros((1, e, h, w), np.float32)
    # package 1 peaks at cell (1, 1), box covering cells x 0..2, y 0..2; a weaker duplicate at (1, 2)
    for (r, c), logit in (((1, 1), 4.0), ((1, 2), 1.0)):
        obj[0, 0, r, c] = logit
        boxes[0, :, r, c] = [0.0, 0.0, 0.5, 0.5]
        cond[0, 3, r, c] = 5.0  # wet
    # package 2 at (3, 4): box x 0.6..0.9, y 0.75..1.0, condition "open"
    obj[0, 0, 3, 4] = 2.0
    boxes[0, :, 3, 4] = [0.6, 0.75, 0.9, 1.0]
    cond[0, 4, 3, 4] = 5.0
    emb[0, 0, :2, :3] = 1.0  # the embedding of package 1's cells points along axis 0
    emb[0, 2, 3, 4] = 2.0
    return {"objectness": obj, "boxes": boxes, "condition": cond, "embedding": emb}


def test_decode_hand_made_maps_into_frame_pixels() -> None:
    (dets,) = decode(dense_maps(), [(360, 640)], score_threshold=0.5, iou_threshold=0.5)
    assert len(dets) == 2
    first, second = dets
    assert (first.box.x1, first.box.y1, first.box.x2, first.box.y2) == (0.0, 0.0, 320.0, 180.0)
    assert abs(first.score - 1 / (1 + np.exp(-4.0))) < 1e-6
    assert first.condition == "wet" and abs(float(first.condition_probs.sum()) - 1) < 1e-6
    assert np.allclose(first.embedding, [1, 0, 0])
    assert second.condition == "open"
    assert np.allclose([second.box.x1, second.box.y1, second.box.x2, second.box.y2], [384, 270, 576, 360])
    assert np.allclose(second.embedding, [0, 0, 1])
    # below the threshold nothing is left; an empty batch entry decodes to no detections
    assert decode(dense_maps(), [(360, 640)], score_threshold=0.99) == [[]]


def image_by_image(raw: dict[str, np.ndarray], sizes: list[tuple[int, int]]) -> list[list[tuple]]:
    """The decode the batched one replaced: one image, one detection at a time (the reference)."""
    out = []
    h, w = raw["objectness"].shape[2:]
    cy, cx = (np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w
    for b, (fh, fw) in enumerate(sizes):
        scores = 1 / (1 + np.exp(-raw["objectness"][b, 0].reshape(-1)))
        cand = np.flatnonzero(scores >= 0.3)
        boxes = np.clip(raw["boxes"][b].reshape(4, -1), 0.0, 1.0)
        order, kept = cand[np.argsort(-scores[cand], kind="stable")], []
        while order.size:
            i, rest = order[0], order[1:]
            kept.append(i)
            a, r = boxes[:, i], boxes[:, rest]
            inter = np.clip(np.minimum(a[2], r[2]) - np.maximum(a[0], r[0]), 0, None) * np.clip(
                np.minimum(a[3], r[3]) - np.maximum(a[1], r[1]), 0, None
            )
            union = (a[2] - a[0]) * (a[3] - a[1]) + (r[2] - r[0]) * (r[3] - r[1]) - inter
            order = rest[inter / union <= 0.5]
        dets = []
        for cell in kept:
            x1, y1, x2, y2 = boxes[:, cell]
            rows, cols = (cy >= y1) & (cy <= y2), (cx >= x1) & (cx <= x2)
            grid = raw["embedding"][b][:, rows][:, :, cols]
            vec = grid.mean(axis=(1, 2)) if grid.size else raw["embedding"][b].reshape(-1, h * w)[:, cell]
            logits = raw["condition"][b].reshape(5, -1)[:, cell]
            probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
            box = (x1 * fw, y1 * fh, x2 * fw, y2 * fh)
            dets.append((box, scores[cell], probs, vec / np.linalg.norm(vec)))
        out.append(dets)
    return out


def test_batched_decode_finds_what_image_by_image_decoding_finds() -> None:
    rng = np.random.default_rng(7)
    n, h, w, e = 9, 12, 20, 8
    obj = rng.normal(-6, 1, (n, 1, h, w)).astype(np.float32)
    centre = rng.uniform(0.05, 0.95, (n, 2, h, w))
    half = rng.uniform(0.02, 0.2, (n, 2, h, w))
    boxes = np.concatenate([centre - half, centre + half], axis=1)[:, [0, 1, 2, 3]].astype(np.float32)
    for b in range(n - 1):  # the last image has nothing above the threshold
        for _ in range(b % 4 + 1):  # a few packages, each firing a patch of neighbouring cells
            r, c = rng.integers(0, h - 2), rng.integers(0, w - 2)
            obj[b, 0, r : r + 3, c : c + 3] = rng.normal(1.5, 1.5, (3, 3))
            boxes[b, :, r : r + 3, c : c + 3] = (boxes[b, :, r, c] + rng.normal(0, 0.01, (4, 3, 3)).T).T
    raw = {
        "objectness": obj,
        "boxes": boxes,
        "condition": rng.normal(0, 2, (n, 5, h, w)).astype(np.float32),
        "embedding": rng.normal(0, 1, (n, e, h, w)).astype(np.float32),
    }
    sizes = [(360, 640)] * (n - 2) + [(720, 1280), (360, 640)]
    got, want = decode(raw, sizes), image_by_image(raw, sizes)
    assert [len(d) for d in got] == [len(d) for d in want] and sum(map(len, want)) > n
    for dets, ref in zip(got, want, strict=True):
        for det, (box, score, probs, vec) in zip(dets, ref, strict=True):
            assert np.allclose([det.box.x1, det.box.y1, det.box.x2, det.box.y2], box, atol=1e-3)
            assert abs(det.score - score) < 1e-6
            assert np.allclose(det.condition_probs, probs, atol=1e-6)
            assert np.allclose(det.embedding, vec, atol=1e-5)


def test_preprocess_matches_the_training_normalisation() -> None:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (360, 640, 3), dtype=np.uint8) for _ in range(2)]
    batch = preprocess(frames, (224, 384))
    assert batch.shape == (2, 3, 224, 384) and batch.dtype == np.float32
    rgb = np.stack([resize_rgb(f, (224, 384)) for f in frames])
    ref = normalize_on_device(torch.from_numpy(rgb)).numpy()
    assert np.abs(batch - ref).max() < 1e-5
    # channel order is RGB: a pure-blue BGR frame lights up channel 2 only
    blue = np.zeros((360, 640, 3), np.uint8)
    blue[..., 0] = 255
    out = preprocess([blue], (224, 384))[0]
    assert out[2].mean() > 2 and out[0].mean() < -1
