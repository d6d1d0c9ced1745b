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
