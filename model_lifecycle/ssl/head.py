"""DINO's projection head: a 3-layer MLP to a bottleneck, then a weight-normalised prototype layer."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm


class DinoHead(nn.Module):
    """MLP (in → hidden → hidden → bottleneck), L2 normalisation, then `out_dim` prototype logits
    whose weight norm is fixed at 1 (DINO's `norm_last_layer`), which keeps training stable."""

    def __init__(self, in_dim: int, out_dim: int = 4096, hidden: int = 1024, bottleneck: int = 256) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.GELU(),
            nn.Linear(hidden, hidden), nn.GELU(),
            nn.Linear(hidden, bottleneck),
        )  # fmt: skip
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.last = weight_norm(nn.Linear(bottleneck, out_dim, bias=False))
        self.last.parametrizations.weight.original0.data.fill_(1.0)
        self.last.parametrizations.weight.original0.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        return self.last(F.normalize(self.mlp(x), dim=-1))
