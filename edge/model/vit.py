"""Vision Transformer backbone in plain torch (no timm: it cannot be imported next to CPU torch here).

Parameter names follow timm/DINOv2 (`patch_embed.proj`, `cls_token`, `pos_embed`, `register_tokens`,
`blocks.N.norm1`, `blocks.N.attn.qkv`, `blocks.N.attn.proj`, `blocks.N.ls1.gamma`,
`blocks.N.mlp.fc1/fc2`, `norm`) and DINOv3 (`rope_embed.periods`), so published checkpoints load
through the small key map in `checkpoints.py`. Attention runs through `F.scaled_dot_product_attention`
(flash / memory-efficient kernels on GPU, one fused op in the ONNX graph).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edge.model.config import BackboneConfig


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


def rotate_half(x: Tensor) -> Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class RopeEmbedding(nn.Module):
    """DINOv3's 2-D rotary embedding: patch centres in [-1, 1] per axis, `periods` as in its checkpoints."""

    periods: Tensor

    def __init__(self, head_dim: int, base: float) -> None:
        super().__init__()
        if head_dim % 4:
            raise ValueError(f"RoPE needs a head dim divisible by 4, got {head_dim}")
        n = head_dim // 4
        self.register_buffer("periods", base ** (2 * torch.arange(n, dtype=torch.float32) / (head_dim // 2)))

    def forward(self, grid: tuple[int, int]) -> tuple[Tensor, Tensor]:
        h, w = grid
        dev = self.periods.device
        ys = (torch.arange(h, device=dev, dtype=torch.float32) + 0.5) / h * 2 - 1
        xs = (torch.arange(w, device=dev, dtype=torch.float32) + 0.5) / w * 2 - 1
        coords = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).flatten(0, 1)  # (N, 2)
        angles = 2 * math.pi * coords[:, :, None] / self.periods[None, None, :]  # (N, 2, hd/4)
        angles = angles.flatten(1, 2).tile(2)  # (N, hd)
        return angles.cos(), angles.sin()


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None = None) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        if rope is not None:
            q, k = _apply_rope(q, rope), _apply_rope(k, rope)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, d))


def _apply_rope(x: Tensor, rope: tuple[Tensor, Tensor]) -> Tensor:
    """Rotate the patch tokens only; the prefix (cls, registers) carries no position."""
    cos, sin = rope
    prefix = x.shape[-2] - cos.shape[0]
    head, patches = x[..., :prefix, :], x[..., prefix:, :]
    patches = patches * cos.to(x.dtype) + rotate_half(patches) * sin.to(x.dtype)
    return torch.cat((head, patches), dim=-2)


class Block(nn.Module):
    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        dim = cfg.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.attn = Attention(dim, cfg.num_heads, cfg.qkv_bias)
        self.ls1 = LayerScale(dim, cfg.layerscale_init) if cfg.layerscale_init else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio))
        self.ls2 = LayerScale(dim, cfg.layerscale_init) if cfg.layerscale_init else nn.Identity()

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None = None) -> Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), rope))
        return x + self.ls2(self.mlp(self.norm2(x)))


def resize_pos_embed(pos_embed: Tensor, src_grid: tuple[int, int], dst_grid: tuple[int, int]) -> Tensor:
    """Bicubic resize of a (1, 1 + H*W, D) absolute position table to another (possibly non-square) grid."""
    if tuple(src_grid) == tuple(dst_grid):
        return pos_embed
    cls_pos, patch_pos = pos_embed[:, :1], pos_embed[:, 1:]
    d = patch_pos.shape[-1]
    patch_pos = patch_pos.reshape(1, *src_grid, d).permute(0, 3, 1, 2).float()
    patch_pos = F.interpolate(patch_pos, size=dst_grid, mode="bicubic", align_corners=False)
    patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, dst_grid[0] * dst_grid[1], d).to(pos_embed.dtype)
    return torch.cat((cls_pos, patch_pos), dim=1)


class VisionTransformer(nn.Module):
    """ViT returning normalised patch tokens as a (B, D, H/p, W/p) map for dense heads."""

    def __init__(self, cfg: BackboneConfig, grid: tuple[int, int]) -> None:
        super().__init__()
        self.cfg = cfg
        self.grid = grid
        dim = cfg.embed_dim
        self.patch_embed = PatchEmbed(cfg.patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_tokens = (
            nn.Parameter(torch.zeros(1, cfg.num_register_tokens, dim)) if cfg.num_register_tokens else None
        )
        if cfg.pos_encoding == "learned":
            self.pos_embed: nn.Parameter | None = nn.Parameter(torch.zeros(1, 1 + grid[0] * grid[1], dim))
            self.rope_embed: RopeEmbedding | None = None
        else:
            self.pos_embed = None
            self.rope_embed = RopeEmbedding(cfg.head_dim, cfg.rope_base)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self._init_weights()

    def _init_weights(self) -> None:
        for p in (self.cls_token, self.register_tokens, self.pos_embed):
            if p is not None:
                nn.init.trunc_normal_(p, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, images: Tensor) -> Tensor:
        return self.feature_map(self.tokens(images), self.patch_grid(images))

    def patch_grid(self, images: Tensor) -> tuple[int, int]:
        return images.shape[-2] // self.cfg.patch_size, images.shape[-1] // self.cfg.patch_size

    def tokens(self, images: Tensor, depth: int | None = None) -> Tensor:
        """The token sequence (cls, registers, patches) after the first `depth` blocks (all by default).

        With `run_blocks` and `feature_map` it splits the forward pass at a block, so fine-tuning can
        run a frozen prefix once per frame and train only the rest."""
        b = images.shape[0]
        x = self.patch_embed(images)
        grid = self.patch_grid(images)
        x = torch.cat((self.cls_token.expand(b, -1, -1), x), dim=1)
        if self.pos_embed is not None:
            x = x + resize_pos_embed(self.pos_embed, self.grid, grid)
        if self.register_tokens is not None:
            x = torch.cat((x[:, :1], self.register_tokens.expand(b, -1, -1), x[:, 1:]), dim=1)
        return self.run_blocks(x, grid, 0, depth)

    def run_blocks(self, x: Tensor, grid: tuple[int, int], start: int = 0, stop: int | None = None) -> Tensor:
        """Blocks `start`..`stop` (exclusive; None: to the end) on a token sequence."""
        rope = self.rope_embed(grid) if self.rope_embed is not None else None
        for blk in self.blocks[start:stop]:
            x = blk(x, rope)
        return x

    def feature_map(self, x: Tensor, grid: tuple[int, int]) -> Tensor:
        """Final norm of the patch tokens, as the (B, D, h, w) map the dense heads read."""
        x = self.norm(x[:, -grid[0] * grid[1] :])
        return x.transpose(1, 2).reshape(x.shape[0], -1, *grid)
