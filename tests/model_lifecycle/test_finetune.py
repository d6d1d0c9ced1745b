"""Frozen-prefix fine-tuning: the split forward equals the full one, frozen blocks stay as they
were, the rest learns from the labelled frames, replay frames are distilled, bad options refused."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from contract.frames import Frame
from edge.model.config import get_config
from edge.model.detector import PackageDetector
from model_lifecycle.data import Sample, frame_to_sample
from model_lifecycle.finetune import FeatureCache, FinetuneOptions, finetune

from .conftest import SMALL_INPUT


def detector() -> PackageDetector:
    """`fallback` (width 192) with three blocks at the small input size: two frozen, one trained."""
    cfg = get_config("fallback").with_input_size(*SMALL_INPUT)
    cfg = replace(cfg, backbone=replace(cfg.backbone, depth=3))
    torch.manual_seed(0)
    return PackageDetector(cfg).eval()


@pytest.fixture(scope="module")
def samples(sim_frames: list[Frame]) -> list[Sample]:
    return [frame_to_sample(f, SMALL_INPUT) for f in sim_frames]


def options(**kw: object) -> FinetuneOptions:
    base = dict(frozen_blocks=2, steps=25, batch_size=4, lr=3e-3, warmup_steps=2, log_every=1, threads=None)
    return FinetuneOptions(**{**base, **kw})  # type: ignore[arg-type]


def test_the_forward_split_at_any_block_equals_the_full_forward() -> None:
    model = detector()
    images = torch.randn(2, 3, *SMALL_INPUT)
    backbone = model.backbone
    grid = backbone.patch_grid(images)
    with torch.no_grad():
        full = model(images)
        for depth in range(len(backbone.blocks) + 1):
            tokens = backbone.tokens(images, depth)
            split = model.predict(backbone.feature_map(backbone.run_blocks(tokens, grid, depth), grid))
            for name, value in full.items():
                torch.testing.assert_close(split[name], value)


def test_finetune_trains_the_suffix_only_and_learns_the_labelled_frames(samples: list[Sample]) -> None:
    parent = detector()
    before = {k: v.clone() for k, v in parent.state_dict().items()}
    result = finetune(parent, samples[:3], [], options(distill_weight=0.0))

    losses = [row["loss"] for row in result.history]
    assert result.steps == 25 and len(losses) == 25
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5, losses
    after = result.model.state_dict()
    assert all(torch.equal(parent.state_dict()[k], v) for k, v in before.items()), "the parent is untouched"
    frozen = ("backbone.patch_embed.", "backbone.cls_token", "backbone.pos_embed", "backbone.blocks.0.")
    frozen += ("backbone.blocks.1.",)
    for key, value in before.items():
        changed = not torch.equal(after[key], value)
        assert changed != key.startswith(frozen), key
    assert not any(p.requires_grad is False for p in result.model.parameters())
    assert result.timings["cached_views"] == 6  # 3 frames and their mirrored copies


def test_replay_frames_are_distilled_from_the_parent(samples: list[Sample]) -> None:
    result = finetune(detector(), samples[:2], samples[2:6], options(steps=3, mirror=False))
    assert all("distill" in row and row["distill"] >= 0 for row in result.history)
    only_labelled = finetune(detector(), samples[:2], [], options(steps=2, mirror=False))
    assert all("distill" not in row for row in only_labelled.history)


def test_mirrored_views_flip_the_boxes(samples: list[Sample]) -> None:
    model = detector()
    cache = FeatureCache(model, samples[:2], depth=1, batch_size=2, mirror=True)
    assert len(cache) == 4
    plain, mirrored = cache.tensors["boxes"][:2], cache.tensors["boxes"][2:]
    valid = cache.tensors["valid"][:2]
    torch.testing.assert_close(mirrored[..., 0][valid], 1 - plain[..., 2][valid])
    torch.testing.assert_close(mirrored[..., 1][valid], plain[..., 1][valid])
    assert cache.tensors["tokens"].dtype == torch.float16


def test_bad_options_are_refused(samples: list[Sample]) -> None:
    with pytest.raises(ValueError, match="frozen_blocks"):
        finetune(detector(), samples[:1], [], options(frozen_blocks=3))
    with pytest.raises(ValueError, match="at least one"):
        finetune(detector(), [], [], options())


def test_frames_showing_damage_are_drawn_more_often_when_weighted(samples: list[Sample]) -> None:
    intact = replace(samples[0], conditions=np.zeros_like(samples[0].conditions))  # every package "ok"
    frames = [intact, *samples[:3]]
    cache = FeatureCache(detector(), frames, depth=1, batch_size=4)
    damaged = torch.tensor([bool(s.conditions.any()) for s in frames])
    assert damaged.tolist() == [False, True, True, True]
    torch.testing.assert_close(cache.weights(3.0), 1.0 + 3.0 * damaged.float())
    torch.testing.assert_close(cache.weights(0.0), torch.ones(len(frames)))
