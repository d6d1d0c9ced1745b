"""Load checkpoints written in the official DINOv2 / DINOv3 naming into the backbone."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from edge.model.config import BackboneConfig
from edge.model.vit import VisionTransformer
from model_lifecycle.checkpoints import infer_backbone_config, load_backbone, resize_patch_kernel

DIM, DEPTH = 64, 2


def dinov2_state(patch: int = 14, side: int = 37, registers: int = 4) -> dict[str, torch.Tensor]:
    """A ViT state dict exactly as facebookresearch/dinov2 names it (with registers, LayerScale)."""
    g = torch.Generator().manual_seed(0)
    sd = {
        "cls_token": torch.randn(1, 1, DIM, generator=g),
        "pos_embed": torch.randn(1, 1 + side * side, DIM, generator=g),
        "register_tokens": torch.randn(1, registers, DIM, generator=g),
        "mask_token": torch.zeros(1, DIM),
        "patch_embed.proj.weight": torch.randn(DIM, 3, patch, patch, generator=g),
        "patch_embed.proj.bias": torch.randn(DIM, generator=g),
        "norm.weight": torch.randn(DIM, generator=g),
        "norm.bias": torch.randn(DIM, generator=g),
    }
    for i in range(DEPTH):
        p = f"blocks.{i}."
        sd |= {
            p + "norm1.weight": torch.randn(DIM, generator=g),
            p + "norm1.bias": torch.randn(DIM, generator=g),
            p + "attn.qkv.weight": torch.randn(3 * DIM, DIM, generator=g),
            p + "attn.qkv.bias": torch.randn(3 * DIM, generator=g),
            p + "attn.proj.weight": torch.randn(DIM, DIM, generator=g),
            p + "attn.proj.bias": torch.randn(DIM, generator=g),
            p + "ls1.gamma": torch.randn(DIM, generator=g),
            p + "norm2.weight": torch.randn(DIM, generator=g),
            p + "norm2.bias": torch.randn(DIM, generator=g),
            p + "mlp.fc1.weight": torch.randn(4 * DIM, DIM, generator=g),
            p + "mlp.fc1.bias": torch.randn(4 * DIM, generator=g),
            p + "mlp.fc2.weight": torch.randn(DIM, 4 * DIM, generator=g),
            p + "mlp.fc2.bias": torch.randn(DIM, generator=g),
            p + "ls2.gamma": torch.randn(DIM, generator=g),
        }
    return sd


def backbone(**kw: object) -> VisionTransformer:
    cfg = BackboneConfig(embed_dim=DIM, depth=DEPTH, num_heads=1, num_register_tokens=4, layerscale_init=1e-5)
    return VisionTransformer(BackboneConfig(**{**cfg.__dict__, **kw}), (14, 24))


def test_dinov2_file_with_prefix_and_wrapper_loads_with_resizing(tmp_path: Path) -> None:
    sd = dinov2_state()
    sd["head.weight"] = torch.zeros(3)
    sd["blocks.0.mlp.w12.weight"] = torch.zeros(2, 2)  # SwiGLU part of ViT-g: no place here
    path = tmp_path / "dinov2_vits14_reg4.pth"
    torch.save({"model": {f"backbone.{k}": v for k, v in sd.items()}}, path)

    vit = backbone()
    report = load_backbone(vit, path)

    assert report.missing == []
    assert report.unexpected == ["blocks.0.mlp.w12.weight"]
    assert sorted(report.ignored) == ["head.weight", "mask_token"]
    assert report.resized == {
        "pos_embed": ((1, 1 + 37 * 37, DIM), (1, 1 + 14 * 24, DIM)),
        "patch_embed.proj.weight": ((DIM, 3, 14, 14), (DIM, 3, 16, 16)),
    }
    state = vit.state_dict()
    assert torch.equal(state["blocks.1.attn.qkv.weight"], sd["blocks.1.attn.qkv.weight"])
    assert torch.equal(state["blocks.0.ls2.gamma"], sd["blocks.0.ls2.gamma"])
    assert torch.equal(state["register_tokens"], sd["register_tokens"])
    assert torch.equal(state["pos_embed"][:, 0], sd["pos_embed"][:, 0])
    with pytest.raises(ValueError, match="does not fit"):
        load_backbone(backbone(), path, strict=True)


def test_missing_and_mismatched_keys_are_reported() -> None:
    sd = dinov2_state(patch=16)
    del sd["blocks.1.ls1.gamma"]
    sd["norm.weight"] = torch.zeros(DIM + 1)
    report = load_backbone(backbone(), sd)
    assert report.missing == ["blocks.1.ls1.gamma", "norm.weight"]
    assert report.mismatched == {"norm.weight": ((DIM + 1,), (DIM,))}
    assert not report.clean


def test_dinov3_naming_storage_tokens_rope_chunks_and_masked_bias() -> None:
    sd = dinov2_state(patch=16)
    del sd["pos_embed"]
    sd["storage_tokens"] = sd.pop("register_tokens")
    sd["rope_embed.periods"] = torch.arange(1.0, 1 + DIM // 4)
    bias = sd["blocks.1.attn.qkv.bias"].clone()
    mask = torch.ones(3 * DIM)
    mask[DIM : 2 * DIM] = 0
    sd["blocks.1.attn.qkv.bias_mask"] = mask
    # FSDP-style training checkpoints chunk blocks as blocks.<chunk>.<global index>, under DDP's module.
    chunked = {"module." + re.sub(r"^blocks\.(\d+)\.", r"blocks.0.\1.", k): v for k, v in sd.items()}

    vit = backbone(pos_encoding="rope")
    report = load_backbone(vit, {"teacher": chunked}, strict=False)
    assert report.missing == [] and report.unexpected == [] and report.mismatched == {}
    state = vit.state_dict()
    assert torch.equal(state["register_tokens"], sd["storage_tokens"])
    assert torch.equal(state["rope_embed.periods"], sd["rope_embed.periods"])
    assert torch.equal(state["blocks.1.attn.qkv.bias"], bias * mask)
    assert torch.equal(state["blocks.0.norm1.weight"], sd["blocks.0.norm1.weight"])


def test_infer_config_from_checkpoint() -> None:
    cfg = infer_backbone_config({"model": dinov2_state()})
    assert (cfg.embed_dim, cfg.depth, cfg.patch_size, cfg.num_register_tokens) == (DIM, DEPTH, 14, 4)
    assert cfg.layerscale_init is not None and cfg.pos_encoding == "learned" and cfg.mlp_ratio == 4.0


def test_patch_kernel_resize_preserves_projections_of_resized_patches() -> None:
    w = torch.randn(8, 3, 14, 14, dtype=torch.float64)
    w16 = resize_patch_kernel(w, 16)
    x = torch.randn(5, 3, 14, 14, dtype=torch.float64)
    x16 = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False)
    ref = torch.einsum("bchw,dchw->bd", x, w)
    got = torch.einsum("bchw,dchw->bd", x16, w16)
    assert torch.allclose(ref, got, atol=1e-8)
