from __future__ import annotations

import pytest
import torch

from edge.model.config import CONFIGS, BackboneConfig, get_config
from edge.model.detector import PackageDetector
from edge.model.postprocess import OUTPUT_NAMES
from edge.model.vit import VisionTransformer, resize_pos_embed


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_config_produces_the_dense_maps(name: str) -> None:
    cfg = get_config(name).with_input_size(64, 96)  # architecture as configured, small input for speed
    model = PackageDetector(cfg).eval()
    h, w = cfg.input_size
    with torch.no_grad():
        out = model(torch.randn(1, 3, h, w))
    gh, gw = cfg.grid
    assert list(out) == list(OUTPUT_NAMES)
    assert out["objectness"].shape == (1, 1, gh, gw)
    assert out["boxes"].shape == (1, 4, gh, gw)
    assert out["condition"].shape == (1, cfg.num_conditions, gh, gw)
    assert out["embedding"].shape == (1, cfg.embedding_dim, gh, gw)
    boxes = out["boxes"]
    assert torch.all(boxes[:, 2] > boxes[:, 0]) and torch.all(boxes[:, 3] > boxes[:, 1])


def test_timm_dinov2_parameter_names() -> None:
    cfg = BackboneConfig(embed_dim=64, depth=2, num_heads=2, num_register_tokens=4, layerscale_init=1e-5)
    keys = set(VisionTransformer(cfg, (4, 6)).state_dict())
    for key in (
        "patch_embed.proj.weight",
        "cls_token",
        "pos_embed",
        "register_tokens",
        "blocks.1.norm1.weight",
        "blocks.1.attn.qkv.weight",
        "blocks.1.attn.proj.bias",
        "blocks.1.ls1.gamma",
        "blocks.1.mlp.fc1.weight",
        "blocks.1.mlp.fc2.weight",
        "norm.weight",
    ):
        assert key in keys


def test_non_square_inputs_interpolate_the_position_table() -> None:
    cfg = BackboneConfig(embed_dim=64, depth=1, num_heads=2)
    vit = VisionTransformer(cfg, (14, 24)).eval()
    with torch.no_grad():
        assert vit(torch.randn(2, 3, 224, 384)).shape == (2, 64, 14, 24)
        assert vit(torch.randn(1, 3, 160, 320)).shape == (1, 64, 10, 20)
    pe = torch.randn(1, 1 + 4 * 6, 8)
    same = resize_pos_embed(pe, (4, 6), (4, 6))
    assert same is pe
    up = resize_pos_embed(pe, (4, 6), (8, 12))
    assert up.shape == (1, 1 + 96, 8)
    assert torch.equal(up[:, 0], pe[:, 0])


def test_rope_backbone_runs_at_any_grid() -> None:
    cfg = BackboneConfig(embed_dim=64, depth=1, num_heads=2, pos_encoding="rope", num_register_tokens=2)
    vit = VisionTransformer(cfg, (4, 6)).eval()
    assert vit.pos_embed is None and "rope_embed.periods" in vit.state_dict()
    with torch.no_grad():
        assert vit(torch.randn(1, 3, 64, 96)).shape == (1, 64, 4, 6)
        assert vit(torch.randn(1, 3, 96, 64)).shape == (1, 64, 6, 4)
