"""Package detector: ViT backbone + anchor-free dense heads on the stride-16 patch grid.

Every grid cell predicts (FCOS/CenterNet-style) an objectness logit, a box as distances from the
cell centre to the four sides, condition logits, and an appearance embedding. The forward pass
returns the dense maps named in `postprocess.OUTPUT_NAMES`; thresholding, NMS and box pooling of
the embedding happen in numpy (`postprocess.decode`) so every engine shares one decode.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edge.model.config import ModelConfig
from edge.model.vit import VisionTransformer

OBJECTNESS_PRIOR = 0.01
INITIAL_BOX_CELLS = 1.5


class DenseHead(nn.Module):
    """Shared 2-conv tower for objectness/box/condition; a 1x1 projection of the tokens for the embedding."""

    def __init__(self, in_dim: int, channels: int, embedding_dim: int, num_conditions: int) -> None:
        super().__init__()
        self.tower = nn.Sequential(
            nn.Conv2d(in_dim, channels, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.GELU(),
        )
        self.objectness = nn.Conv2d(channels, 1, 1)
        self.box = nn.Conv2d(channels, 4, 1)
        self.condition = nn.Conv2d(channels, num_conditions, 1)
        self.embedding = nn.Conv2d(in_dim, embedding_dim, 1)
        assert self.objectness.bias is not None and self.box.bias is not None
        nn.init.constant_(self.objectness.bias, -math.log((1 - OBJECTNESS_PRIOR) / OBJECTNESS_PRIOR))
        nn.init.normal_(self.box.weight, std=0.01)
        nn.init.constant_(self.box.bias, math.log(math.expm1(INITIAL_BOX_CELLS)))


class PackageDetector(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = VisionTransformer(cfg.backbone, cfg.grid)
        self.head = DenseHead(
            cfg.backbone.embed_dim, cfg.head_channels, cfg.embedding_dim, cfg.num_conditions
        )

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """images (B, 3, H, W) normalised as in `preprocess` -> dense maps, each (B, C, H/p, W/p)."""
        return self.predict(self.backbone(images))

    def predict(self, tokens: Tensor) -> dict[str, Tensor]:
        """The heads on the backbone's (B, D, h, w) feature map."""
        feats = self.head.tower(tokens)
        return {
            "objectness": self.head.objectness(feats),
            "boxes": _ltrb_to_boxes(self.head.box(feats)),
            "condition": self.head.condition(feats),
            "embedding": self.head.embedding(tokens),
        }


def _ltrb_to_boxes(raw: Tensor) -> Tensor:
    """Side distances (softplus, in cells) -> normalised (x1, y1, x2, y2) boxes per cell."""
    h, w = raw.shape[-2:]
    dist = F.softplus(raw.float())
    cy = (torch.arange(h, device=raw.device, dtype=torch.float32) + 0.5) / h
    cx = (torch.arange(w, device=raw.device, dtype=torch.float32) + 0.5) / w
    cx, cy = cx.view(1, 1, w), cy.view(1, h, 1)
    sx, sy = 1.0 / w, 1.0 / h
    return torch.stack(
        (
            cx - dist[:, 0] * sx,
            cy - dist[:, 1] * sy,
            cx + dist[:, 2] * sx,
            cy + dist[:, 3] * sy,
        ),
        dim=1,
    )
