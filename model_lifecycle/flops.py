"""Analytic FLOP count of the detector (multiply-add = 2 FLOPs), for roofline fractions in benchmarks."""

from __future__ import annotations

from edge.model.config import ModelConfig


def detector_flops(cfg: ModelConfig) -> int:
    """Forward FLOPs for one image at the config's input size (matmuls and convolutions only)."""
    bb = cfg.backbone
    h, w = cfg.grid
    patches = h * w
    tokens = patches + 1 + bb.num_register_tokens
    d = bb.embed_dim
    hidden = int(d * bb.mlp_ratio)
    patch_embed = 2 * patches * 3 * bb.patch_size**2 * d
    per_block = (
        2 * tokens * d * 3 * d  # qkv
        + 2 * 2 * tokens * tokens * d  # Q·Kᵀ and A·V
        + 2 * tokens * d * d  # proj
        + 2 * 2 * tokens * d * hidden  # fc1 + fc2
    )
    c = cfg.head_channels
    heads = 2 * patches * (9 * d * c + 9 * c * c + c * (1 + 4 + cfg.num_conditions) + d * cfg.embedding_dim)
    return patch_embed + bb.depth * per_block + heads
