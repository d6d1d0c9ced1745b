"""Checkpoints written by timm (an implementation we did not write) load through our key map and
give timm's own patch tokens: DINOv2 (`reg_token`, patches-only `pos_embed`) and DINOv3 (timm's Eva
naming: `gamma_1`, `attn.q_bias` / `attn.v_bias`, RoPE).

timm cannot be installed next to CPU torch here (it needs torchvision), so its files and outputs
were recorded once (`fixtures/make_timm_fixtures.py`, timm 1.0.31) at tiny widths; at the published
ViT-S/B widths the same comparison gave a max abs difference of 0.0 for all eight timm DINOv2 /
DINOv3 S/B variants (run by hand, 2026-12-06).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edge.model.vit import VisionTransformer
from model_lifecycle.checkpoints import describe_checkpoint, load_backbone

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("name", ["timm_dinov2_vits14", "timm_dinov2_vits14_reg4", "timm_dinov3_vits16_qkvb"])
def test_timm_files_give_timms_patch_tokens(name: str, tmp_path: Path) -> None:
    fixture = torch.load(FIXTURES / f"{name}.pt", weights_only=True)
    torch.save({k: v.float() for k, v in fixture["state_dict"].items()}, tmp_path / "timm.pth")

    cfg, origin = describe_checkpoint(tmp_path / "timm.pth")
    image = fixture["image"].float()
    grid = (image.shape[-2] // cfg.patch_size, image.shape[-1] // cfg.patch_size)
    ours = VisionTransformer(cfg, grid).eval()
    report = load_backbone(ours, tmp_path / "timm.pth", strict=True)
    with torch.no_grad():
        got = ours(image).flatten(2).transpose(1, 2)

    assert report.clean and origin["naming"] != "huggingface"
    assert (got - fixture["patch_tokens"]).abs().max().item() <= 1e-4
