"""Hugging Face DINOv2 / DINOv3 checkpoints load through our key map and give the same patch tokens
as the reference implementation (`transformers`, a dev dependency): the check of the loader that
does not rely on code we wrote.

Each architecture is built from its published config (width, heads, patch, registers, image size,
LayerScale, LayerNorm epsilon, RoPE base) with only the depth cut to two blocks for speed, filled
with random weights (norms and LayerScale too, so a swapped or dropped tensor shows), saved with
`save_pretrained`, loaded into our ViT at a non-square input grid (so DINOv2's 37x37 position table
is interpolated, as Hugging Face does at run time) and compared on the same image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edge.model.preprocess import preprocess
from edge.model.vit import VisionTransformer
from model_lifecycle.checkpoints import describe_checkpoint, load_backbone

transformers = pytest.importorskip("transformers")
from transformers.initialization import no_init_weights  # noqa: E402

DEPTH = 2
S, B = {"hidden_size": 384, "num_attention_heads": 6}, {"hidden_size": 768, "num_attention_heads": 12}
DINOV2 = {"image_size": 518, "patch_size": 14, "layerscale_value": 1.0, "layer_norm_eps": 1e-6}
DINOV3 = {"image_size": 224, "patch_size": 16, "layerscale_value": 1e-5, "layer_norm_eps": 1e-5,
          "rope_theta": 100.0, "num_register_tokens": 4, "key_bias": False}  # fmt: skip
CASES = {
    "dinov2-vits14": ("Dinov2Config", "Dinov2Model", {**DINOV2, **S}),
    "dinov2-vitb14": ("Dinov2Config", "Dinov2Model", {**DINOV2, **B}),
    "dinov2-vits14-reg": ("Dinov2WithRegistersConfig", "Dinov2WithRegistersModel", {**DINOV2, **S, "num_register_tokens": 4}),
    "dinov2-vitb14-reg": ("Dinov2WithRegistersConfig", "Dinov2WithRegistersModel", {**DINOV2, **B, "num_register_tokens": 4}),
    "dinov3-vits16": ("DINOv3ViTConfig", "DINOv3ViTModel", {**DINOV3, **S, "intermediate_size": 1536}),
    "dinov3-vitb16": ("DINOv3ViTConfig", "DINOv3ViTModel", {**DINOV3, **B, "intermediate_size": 3072}),
}  # fmt: skip


def _randomize(model: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if name.endswith(("norm1.weight", "norm2.weight", "layernorm.weight", "norm.weight")):
                p.copy_(1 + 0.1 * noise)
            elif "lambda1" in name:
                p.copy_(0.5 + 0.1 * noise)
            else:
                p.copy_(0.05 * noise)


@pytest.mark.parametrize("case", list(CASES))
def test_patch_tokens_match_transformers(case: str, tmp_path: Path) -> None:
    config_cls, model_cls, kw = CASES[case]
    config = getattr(transformers, config_cls)(num_hidden_layers=DEPTH, **kw)
    with no_init_weights():  # every parameter is overwritten below: skip transformers' slow init
        hf = getattr(transformers, model_cls)(config).eval()
    _randomize(hf)
    hf.save_pretrained(tmp_path)

    cfg, origin = describe_checkpoint(tmp_path)
    p = cfg.patch_size
    grid = (12, 20)  # non-square: DINOv2's 37x37 table is interpolated to it
    ours = VisionTransformer(cfg, grid).eval()
    report = load_backbone(ours, tmp_path, strict=True)
    frame = np.random.default_rng(1).integers(0, 255, (360, 640, 3), dtype=np.uint8)
    images = torch.from_numpy(preprocess([frame], (grid[0] * p, grid[1] * p)))
    with torch.no_grad():
        want = hf(pixel_values=images).last_hidden_state[:, -grid[0] * grid[1] :]
        got = ours(images).flatten(2).transpose(1, 2)

    assert origin["naming"] == "huggingface" and len(origin["sha256"]) == 64
    assert (
        cfg.depth == DEPTH
        and cfg.embed_dim == kw["hidden_size"]
        and cfg.num_register_tokens == kw.get("num_register_tokens", 0)
    )
    assert report.clean and ("pos_embed" in report.resized) == (cfg.pos_encoding == "learned")
    assert (got - want).abs().max().item() <= 1e-4
