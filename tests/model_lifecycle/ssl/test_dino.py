"""DINO's pieces: multi-crop views, the centred loss, and an adaptation that moves only the backbone."""

import numpy as np
import pytest
import torch

from edge.model.detector import PackageDetector
from model_lifecycle.ssl.adapt import AdaptOptions, adapt
from model_lifecycle.ssl.loss import DinoLoss
from model_lifecycle.ssl.views import ViewSpec, local_size_for, multi_crop

SIZE = (64, 96)


def test_multi_crop_gives_two_global_and_the_local_views_at_their_sizes(frames: list[np.ndarray]) -> None:
    spec = ViewSpec(SIZE, local_size_for(SIZE, 16), local_crops=3)
    views = multi_crop(torch.from_numpy(np.stack(frames)), spec, torch.Generator().manual_seed(0))
    assert [tuple(v.shape[-2:]) for v in views] == [SIZE, SIZE, (32, 48), (32, 48), (32, 48)]
    assert all(v.shape[0] == len(frames) and v.min() >= 0 and v.max() <= 1 for v in views)
    assert not torch.allclose(views[0], views[1])  # two different crops of the same frames


def test_dino_loss_centres_the_teacher_and_is_lowest_when_the_student_agrees() -> None:
    torch.manual_seed(0)
    teacher = [torch.randn(16, 32) * 5 for _ in range(2)]
    loss = DinoLoss(32, center_momentum=0.9)
    agreeing = loss([teacher[1] * 2.5, teacher[0] * 2.5], teacher, teacher_temp=0.04)
    assert torch.allclose(loss.center, 0.1 * torch.cat(teacher).mean(0, keepdim=True))
    random = DinoLoss(32)([torch.randn(16, 32), torch.randn(16, 32)], teacher, teacher_temp=0.04)
    assert agreeing < random


def test_adaptation_changes_the_backbone_keeps_the_heads_and_leaves_the_parent(
    small_detector: PackageDetector, frames: list[np.ndarray]
) -> None:
    before = {k: v.clone() for k, v in small_detector.state_dict().items()}
    opts = AdaptOptions(steps=4, batch_size=4, local_crops=2, head_warmup_steps=2, warmup_steps=1, lr=1e-3,
                        out_dim=64, log_every=1)  # fmt: skip
    result = adapt(small_detector, frames, frames[:4], opts)
    assert result.steps == 4 and len(result.history) == 4
    assert (
        "anchor" not in result.history[1] and "anchor" in result.history[2]
    )  # backbone trains after warm-up
    adapted = result.model.state_dict()
    assert all(torch.equal(adapted[k], v) for k, v in before.items() if k.startswith("head."))
    assert any(not torch.equal(adapted[k], v) for k, v in before.items() if k.startswith("backbone.blocks"))
    assert all(torch.equal(small_detector.state_dict()[k], v) for k, v in before.items())


def test_adaptation_refuses_no_frames_and_a_warm_up_as_long_as_the_run(
    small_detector: PackageDetector,
) -> None:
    with pytest.raises(ValueError, match="at least one unlabeled frame"):
        adapt(small_detector, [])
    with pytest.raises(ValueError, match="head_warmup_steps"):
        adapt(
            small_detector, [np.zeros((3, *SIZE), np.uint8)], opts=AdaptOptions(steps=5, head_warmup_steps=5)
        )
