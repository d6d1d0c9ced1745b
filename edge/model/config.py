"""Model configurations: the ViT backbone sizes and the detector that sits on its patch tokens.

Input resolution. Cameras deliver 640x360 (16:9). Configs default to 384x224 (0.6 scale, 24x14 =
336 tokens): a typical 45-70 px tall package spans about three patches. The shipped edge model
(`models/default`) is `tiny` at 320x192 (0.5 scale, 20x12 = 240 tokens): the same held-out accuracy
in two thirds of the FLOPs, which the 2-core CPU budget (2 cameras x 30 FPS) needs. Heights are
the multiples of 16 nearest the 16:9 aspect, so frames are stretched by at most 7 %; boxes are
predicted in normalised coordinates and map back exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from contract.vocabulary import CONDITIONS

PosEncoding = Literal["learned", "rope"]


@dataclass(frozen=True)
class BackboneConfig:
    """Hyper-parameters of a DINOv2/DINOv3-style ViT (names follow timm/DINOv2)."""

    embed_dim: int
    depth: int
    num_heads: int
    patch_size: int = 16
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    num_register_tokens: int = 0
    layerscale_init: float | None = None
    """LayerScale initial value (DINOv2 uses 1e-5); None builds blocks without `ls1`/`ls2`."""
    pos_encoding: PosEncoding = "learned"
    """`learned`: absolute `pos_embed` (DINOv2); `rope`: 2-D rotary embedding (DINOv3)."""
    rope_base: float = 100.0
    norm_eps: float = 1e-6
    """LayerNorm epsilon: 1e-6 in DINOv2 and timm, 1e-5 in DINOv3 (checkpoints load with theirs)."""

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads


@dataclass(frozen=True)
class ModelConfig:
    """A backbone plus the dense detection heads, at a fixed input size (height, width)."""

    name: str
    backbone: BackboneConfig
    input_size: tuple[int, int] = (224, 384)
    head_channels: int = 128
    embedding_dim: int = 64
    num_conditions: int = len(CONDITIONS)

    @property
    def grid(self) -> tuple[int, int]:
        p = self.backbone.patch_size
        h, w = self.input_size
        if h % p or w % p:
            raise ValueError(f"input size {self.input_size} is not a multiple of the patch size {p}")
        return h // p, w // p

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        bb = BackboneConfig(**data["backbone"])
        rest = {k: v for k, v in data.items() if k != "backbone"}
        rest["input_size"] = tuple(rest.get("input_size", (224, 384)))
        return cls(backbone=bb, **rest)

    def with_input_size(self, height: int, width: int) -> ModelConfig:
        return replace(self, input_size=(height, width))


CONFIGS: dict[str, ModelConfig] = {
    # Two blocks: for tests and as a last-resort model on very small boxes.
    "fallback": ModelConfig(
        "fallback", BackboneConfig(embed_dim=192, depth=2, num_heads=3), head_channels=64, embedding_dim=32
    ),
    # ViT-Ti/16: the default edge model (2 CPU cores, INT8).
    "tiny": ModelConfig("tiny", BackboneConfig(embed_dim=192, depth=12, num_heads=3), head_channels=128),
    # ViT-S/16: DINOv2/DINOv3 ViT-S checkpoints load into it.
    "small": ModelConfig(
        "small", BackboneConfig(embed_dim=384, depth=12, num_heads=6, layerscale_init=1e-5), head_channels=192
    ),
    # ViT-B/16: the production config for GPUs and Jetson-class boxes.
    "base": ModelConfig(
        "base",
        BackboneConfig(embed_dim=768, depth=12, num_heads=12, layerscale_init=1e-5),
        head_channels=256,
        embedding_dim=128,
    ),
}


def get_config(name: str) -> ModelConfig:
    """Look up a named config; the error lists the valid names."""
    try:
        return CONFIGS[name]
    except KeyError:
        raise KeyError(f"unknown model config {name!r}; choose one of {sorted(CONFIGS)}") from None
