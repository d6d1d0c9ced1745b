"""Load published DINOv2 / DINOv3 ViT checkpoints into `vit.VisionTransformer`.

Key map (checkpoint name -> backbone name), applied in this order:

1. wrappers `{"model" | "state_dict" | "teacher" | "student" | "model_ema": sd}` are unwrapped;
2. prefixes `module.`, `teacher.backbone.`, `student.backbone.`, `backbone.`, `encoder.` are
   stripped (DDP, detector and DINO-training checkpoints);
3. `blocks.C.N.<rest>` -> `blocks.N.<rest>` (DINOv2 "block chunks"; N is already global);
4. `storage_tokens` -> `register_tokens` (DINOv3's name for registers);
5. `blocks.N.attn.qkv.bias_mask` is folded into `blocks.N.attn.qkv.bias` (DINOv3 masked key bias);
6. `pos_embed` (1, 1+S*S, D) is bicubically resized to the model grid (1, 1+h*w, D);
7. `patch_embed.proj.weight` (D, 3, p, p) is pseudo-inverse resized (FlexiViT) to (D, 3, q, q)
   when the patch sizes differ (DINOv2 uses 14, our configs 16);
8. identical names: `cls_token`, `register_tokens`, `rope_embed.periods`, `patch_embed.proj.*`,
   `blocks.N.{norm1, attn.qkv, attn.proj, ls1.gamma, norm2, mlp.fc1, mlp.fc2, ls2.gamma}.*`, `norm.*`;
9. ignored (training-only): `mask_token`, `head.*`, `dino_head.*`, `ibot_head.*`, `local_cls_norm.*`.

Everything else is reported: `missing` (backbone keys the file did not provide), `unexpected`
(file keys with no place, e.g. SwiGLU `mlp.w12` of ViT-g), `mismatched` (wrong shapes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from edge.model.config import BackboneConfig
from edge.model.vit import VisionTransformer, resize_pos_embed

WRAPPER_KEYS = ("model", "state_dict", "teacher", "student", "model_ema")
PREFIXES = ("module.", "teacher.backbone.", "student.backbone.", "backbone.", "encoder.")
RENAMES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^blocks\.\d+\.(\d+)\.(.+)$"), r"blocks.\1.\2"),
    (re.compile(r"^storage_tokens$"), "register_tokens"),
)
IGNORED = re.compile(r"^(mask_token|head\..*|dino_head\..*|ibot_head\..*|local_cls_norm\..*)$")


@dataclass
class LoadReport:
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    mismatched: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    resized: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self) -> str:
        return (
            f"loaded {len(self.loaded)}, resized {sorted(self.resized)}, missing {self.missing}, "
            f"unexpected {self.unexpected}, mismatched {sorted(self.mismatched)}, ignored {len(self.ignored)}"
        )


def read_state_dict(path: Path | str) -> dict[str, Tensor]:
    """A checkpoint file (.pth/.pt, or .safetensors when the package is installed) as a flat state dict."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    return unwrap(obj)


def unwrap(obj: Any) -> dict[str, Tensor]:
    """Descend through training-checkpoint wrappers to the tensor dict."""
    while isinstance(obj, dict) and not any(isinstance(v, Tensor) for v in obj.values()):
        inner = next((obj[k] for k in WRAPPER_KEYS if k in obj and isinstance(obj[k], dict)), None)
        if inner is None:
            raise ValueError(f"no state dict found under keys {sorted(obj)[:10]}")
        obj = inner
    return {k: v for k, v in obj.items() if isinstance(v, Tensor)}


def map_key(key: str) -> str:
    """Checkpoint key -> backbone key (prefix stripping and renames; see the module table)."""
    changed = True
    while changed:
        changed = False
        for p in PREFIXES:
            if key.startswith(p):
                key, changed = key[len(p) :], True
    for pattern, repl in RENAMES:
        key = pattern.sub(repl, key)
    return key


def resize_patch_kernel(weight: Tensor, size: int) -> Tensor:
    """Resize a (D, C, p, p) patch-embedding kernel to (D, C, q, q) so that patch·kernel is preserved
    for resized patches (FlexiViT's pseudo-inverse resize)."""
    p = weight.shape[-1]
    if p == size:
        return weight
    basis = torch.eye(p * p, dtype=torch.float64).reshape(p * p, 1, p, p)
    resized = F.interpolate(basis, size=(size, size), mode="bilinear", align_corners=False)
    mat = resized.reshape(p * p, size * size).T  # (q*q, p*p): resize as a linear map
    flat = weight.double().reshape(-1, p * p) @ torch.linalg.pinv(mat)
    return flat.reshape(*weight.shape[:2], size, size).to(weight.dtype)


def _fold_bias_masks(sd: dict[str, Tensor]) -> list[str]:
    consumed = []
    for key in [k for k in sd if k.endswith("attn.qkv.bias_mask")]:
        mask = sd.pop(key).float()
        if torch.isnan(mask).any():  # never initialised: DINOv3 masks the key third
            third = mask.numel() // 3
            mask = torch.ones_like(mask)
            mask[third : 2 * third] = 0
        bias_key = key[: -len("_mask")]
        if bias_key in sd:
            sd[bias_key] = sd[bias_key] * mask.to(sd[bias_key].dtype)
        consumed.append(key)
    return consumed


def infer_backbone_config(state: dict[str, Tensor], head_dim: int = 64) -> BackboneConfig:
    """Backbone hyper-parameters implied by a checkpoint (DINOv2/v3 ViTs use 64-dim heads)."""
    sd = {map_key(k): v for k, v in unwrap(state).items()}
    proj = sd["patch_embed.proj.weight"]
    dim = proj.shape[0]
    depth = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k)))
    regs = sd.get("register_tokens")
    return BackboneConfig(
        embed_dim=dim,
        depth=depth,
        num_heads=dim // head_dim,
        patch_size=proj.shape[-1],
        mlp_ratio=sd["blocks.0.mlp.fc1.weight"].shape[0] / dim if "blocks.0.mlp.fc1.weight" in sd else 4.0,
        qkv_bias="blocks.0.attn.qkv.bias" in sd,
        num_register_tokens=0 if regs is None else regs.shape[1],
        layerscale_init=1e-5 if "blocks.0.ls1.gamma" in sd else None,
        pos_encoding="learned" if "pos_embed" in sd else "rope",
    )


def load_backbone(
    model: VisionTransformer, source: Path | str | dict[str, Tensor], strict: bool = False
) -> LoadReport:
    """Copy a DINOv2/DINOv3 checkpoint into `model` in place; `strict` raises unless the report is clean."""
    raw = read_state_dict(source) if isinstance(source, str | Path) else unwrap(source)
    sd: dict[str, Tensor] = {}
    report = LoadReport()
    for key, value in raw.items():
        sd[map_key(key)] = value
    report.ignored.extend(_fold_bias_masks(sd))
    target = model.state_dict()
    new_state: dict[str, Tensor] = {}
    for key, value in sd.items():
        if IGNORED.match(key):
            report.ignored.append(key)
            continue
        if key not in target:
            report.unexpected.append(key)
            continue
        want = target[key].shape
        if key == "pos_embed" and value.shape != want:
            n = value.shape[1] - 1
            side = round(n**0.5)
            if side * side != n:
                raise ValueError(f"pos_embed of {n} patches is not a square grid")
            value = resize_pos_embed(value, (side, side), model.grid)
            report.resized[key] = (tuple(sd[key].shape), tuple(want))
        elif key == "patch_embed.proj.weight" and value.shape[:2] == want[:2] and value.shape != want:
            value = resize_patch_kernel(value, want[-1])
            report.resized[key] = (tuple(sd[key].shape), tuple(want))
        if value.shape != want:
            report.mismatched[key] = (tuple(value.shape), tuple(want))
            continue
        new_state[key] = value.to(target[key].dtype)
        report.loaded.append(key)
    report.missing = sorted(set(target) - set(new_state))
    if strict and not report.clean:
        raise ValueError(f"checkpoint does not fit the backbone: {report.summary()}")
    model.load_state_dict(new_state, strict=False)
    return report
