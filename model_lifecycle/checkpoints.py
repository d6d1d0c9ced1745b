"""Load published DINOv2 / DINOv3 ViT checkpoints into `vit.VisionTransformer`.

Key map (checkpoint name -> backbone name), applied in this order:

1. wrappers `{"model" | "state_dict" | "teacher" | "student" | "model_ema": sd}` are unwrapped;
2. prefixes `module.`, `teacher.backbone.`, `student.backbone.`, `backbone.`, `encoder.` are
   stripped (DDP, detector and DINO-training checkpoints);
3. `blocks.C.N.<rest>` -> `blocks.N.<rest>` (DINOv2 "block chunks"; N is already global);
4. `storage_tokens` (DINOv3) and `reg_token` (timm) -> `register_tokens`; timm's `blocks.N.gamma_{1,2}`
   -> `blocks.N.ls{1,2}.gamma`, its `attn.q_bias` + `attn.v_bias` -> `attn.qkv.bias` (zero key bias),
   its patches-only `pos_embed` (cls position folded into `cls_token`) gets a zero cls row;
5. `blocks.N.attn.qkv.bias_mask` is folded into `blocks.N.attn.qkv.bias` (DINOv3 masked key bias);
6. `pos_embed` (1, 1+S*S, D) is bicubically resized to the model grid (1, 1+h*w, D), with
   antialiasing for checkpoints with registers (as DINOv2-with-registers and Hugging Face's
   `Dinov2WithRegistersModel` interpolate; plain DINOv2 does not);
7. `patch_embed.proj.weight` (D, 3, p, p) is pseudo-inverse resized (FlexiViT) to (D, 3, q, q)
   when the patch sizes differ (DINOv2 uses 14, our configs 16);
8. identical names: `cls_token`, `register_tokens`, `rope_embed.periods`, `patch_embed.proj.*`,
   `blocks.N.{norm1, attn.qkv, attn.proj, ls1.gamma, norm2, mlp.fc1, mlp.fc2, ls2.gamma}.*`, `norm.*`;
9. ignored (training-only): `mask_token`, `head.*`, `dino_head.*`, `ibot_head.*`, `local_cls_norm.*`.

Hugging Face `transformers` naming (`Dinov2Model`, `Dinov2WithRegistersModel`, `DINOv3ViTModel`;
5.x names, and the 4.x `attention.attention.{query,key,value}` / `attention.output.dense` ones) is
first converted to the names above (`convert_hf`): `embeddings.{cls_token, register_tokens,
position_embeddings, patch_embeddings[.projection]}`, `[encoder.|model.]layer.N.` -> `blocks.N.`,
`attention.{q,k,v}_proj` fused into `attn.qkv` (a missing key bias, as in DINOv3, becomes zeros),
`attention.o_proj` -> `attn.proj`, `layer_scale{1,2}.lambda1` -> `ls{1,2}.gamma`,
`mlp.{up,down}_proj` -> `mlp.fc{1,2}`, `layernorm` / `norm` -> `norm`. A Hugging Face model folder
(`config.json` + `model.safetensors` or `pytorch_model.bin`) loads as one, its config giving the
head count, LayerNorm epsilon, RoPE base and registers exactly (`describe_checkpoint`).
DINOv3's `rope_embed.periods` is derived from the RoPE base, so a file without it (Hugging Face
keeps it out of the state dict) is not missing anything.

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
    (re.compile(r"^reg_token$"), "register_tokens"),  # timm
    (re.compile(r"^blocks\.(\d+)\.gamma_([12])$"), r"blocks.\1.ls\2.gamma"),  # timm's Eva (DINOv3)
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


HF_PREFIXES = ("dinov2.", "dinov3.", "dinov2_with_registers.")
HF_RENAMES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^embeddings\.position_embeddings$"), "pos_embed"),
    (re.compile(r"^embeddings\.patch_embeddings\.(?:projection\.)?(weight|bias)$"), r"patch_embed.proj.\1"),
    (re.compile(r"^embeddings\.(cls_token|mask_token|register_tokens)$"), r"\1"),
    (re.compile(r"^(?:encoder\.|model\.)?layer\.(\d+)\."), r"blocks.\1."),
    (re.compile(r"^layernorm\.(weight|bias)$"), r"norm.\1"),
    (re.compile(r"\.attention\.(?:o_proj|output\.dense)\."), ".attn.proj."),
    (re.compile(r"\.layer_scale([12])\.lambda1$"), r".ls\1.gamma"),
    (re.compile(r"\.mlp\.up_proj\."), ".mlp.fc1."),
    (re.compile(r"\.mlp\.down_proj\."), ".mlp.fc2."),
)
_HF_QKV = re.compile(
    r"^(blocks\.\d+)\.attention\.(?:attention\.)?(q_proj|k_proj|v_proj|query|key|value)\.(weight|bias)$"
)
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def is_hf_naming(keys: list[str] | set[str] | dict[str, Tensor]) -> bool:
    return any(re.search(r"(^|\.)embeddings\.(cls_token|patch_embeddings)", k) for k in keys)


def convert_hf(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Hugging Face DINOv2 / DINOv3 names -> the timm/DINOv2 names of the backbone (module docstring)."""
    out: dict[str, Tensor] = {}
    qkv: dict[str, dict[str, dict[str, Tensor]]] = {}
    for key, value in sd.items():
        for p in HF_PREFIXES:
            key = key.removeprefix(p)
        for pattern, repl in HF_RENAMES:
            key = pattern.sub(repl, key)
        m = _HF_QKV.match(key)
        if m:
            part = {"query": "q", "key": "k", "value": "v"}.get(m.group(2), m.group(2)[0])
            qkv.setdefault(m.group(1), {}).setdefault(m.group(3), {})[part] = value
            continue
        if key == "register_tokens" and value.numel() == 0:
            continue  # DINOv3 without registers keeps an empty (1, 0, D) parameter
        out[key] = value
    for block, parts in qkv.items():
        w = parts.get("weight", {})
        if set(w) != {"q", "k", "v"}:
            raise ValueError(f"{block}: attention needs q, k and v projections, found {sorted(w)}")
        out[f"{block}.attn.qkv.weight"] = torch.cat([w["q"], w["k"], w["v"]])
        b = parts.get("bias", {})
        if b:
            dim = w["q"].shape[0]
            out[f"{block}.attn.qkv.bias"] = torch.cat(
                [b.get(k, torch.zeros(dim, dtype=w["q"].dtype)) for k in ("q", "k", "v")]
            )
    return out


def _weights_file(path: Path) -> Path:
    if path.is_dir():
        found = next((path / f for f in WEIGHT_FILES if (path / f).is_file()), None)
        if found is None:
            raise FileNotFoundError(f"{path}: no {' or '.join(WEIGHT_FILES)}")
        return found
    return path


def read_state_dict(path: Path | str) -> dict[str, Tensor]:
    """A checkpoint file (.pth/.pt, or .safetensors when the package is installed), or a Hugging Face
    model folder, as a flat state dict (in the file's own naming)."""
    path = _weights_file(Path(path))
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


def _backbone_keys(state: dict[str, Tensor]) -> dict[str, Tensor]:
    sd = {map_key(k): v for k, v in unwrap(state).items()}
    sd = convert_hf(sd) if is_hf_naming(sd) else sd
    _fold_timm_conventions(sd)
    return sd


def _fold_timm_conventions(sd: dict[str, Tensor]) -> None:
    """timm's DINOv3 (Eva) keeps `attn.q_bias` / `attn.v_bias` (no key bias): fuse them into
    `attn.qkv.bias`; timm's DINOv2-with-registers folds the cls position into `cls_token` and keeps
    a patches-only `pos_embed` (1, S*S, D): give it back a zero cls row."""
    for q_key in [k for k in sd if k.endswith(".attn.q_bias")]:
        prefix = q_key[: -len("q_bias")]
        q, v = sd.pop(q_key), sd.pop(prefix + "v_bias")
        sd[prefix + "qkv.bias"] = torch.cat((q, torch.zeros_like(q), v))
    pos = sd.get("pos_embed")
    if pos is not None and round(pos.shape[1] ** 0.5) ** 2 == pos.shape[1]:
        sd["pos_embed"] = torch.cat((pos.new_zeros(1, 1, pos.shape[2]), pos), dim=1)


def _resize_pos_embed(
    pos_embed: Tensor, src: tuple[int, int], dst: tuple[int, int], antialias: bool
) -> Tensor:
    if not antialias:
        return resize_pos_embed(pos_embed, src, dst)
    d = pos_embed.shape[-1]
    grid = pos_embed[:, 1:].reshape(1, *src, d).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=dst, mode="bicubic", align_corners=False, antialias=True)
    grid = grid.permute(0, 2, 3, 1).reshape(1, dst[0] * dst[1], d).to(pos_embed.dtype)
    return torch.cat((pos_embed[:, :1], grid), dim=1)


def infer_backbone_config(state: dict[str, Tensor], head_dim: int = 64) -> BackboneConfig:
    """Backbone hyper-parameters implied by a checkpoint (DINOv2/v3 ViTs use 64-dim heads; DINOv3,
    the RoPE one, uses LayerNorm epsilon 1e-5, DINOv2 1e-6)."""
    sd = _backbone_keys(state)
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
        norm_eps=1e-6 if "pos_embed" in sd else 1e-5,
    )


def describe_checkpoint(path: Path | str) -> tuple[BackboneConfig, dict[str, Any]]:
    """The backbone shape a checkpoint file (or Hugging Face folder) needs, and its origin for the
    model card: path, sha256 of the weights file, naming."""
    import dataclasses
    import hashlib
    import json

    path = Path(path)
    weights = _weights_file(path)
    state = read_state_dict(weights)
    cfg = infer_backbone_config(state)
    hf_config = weights.parent / "config.json"
    naming = "huggingface" if is_hf_naming(state) else "dinov2/dinov3 (timm)"
    if naming == "huggingface" and hf_config.is_file():
        c = json.loads(hf_config.read_text())
        cfg = dataclasses.replace(
            cfg,
            num_heads=int(c.get("num_attention_heads", cfg.num_heads)),
            norm_eps=float(c.get("layer_norm_eps", cfg.norm_eps)),
            rope_base=float(c.get("rope_theta", cfg.rope_base)),
        )
    digest = hashlib.sha256()
    with weights.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    origin = {
        "path": str(path.resolve()),
        "file": weights.name,
        "sha256": digest.hexdigest(),
        "naming": naming,
    }
    return cfg, origin


def load_backbone(
    model: VisionTransformer, source: Path | str | dict[str, Tensor], strict: bool = False
) -> LoadReport:
    """Copy a DINOv2/DINOv3 checkpoint into `model` in place; `strict` raises unless the report is clean."""
    raw = read_state_dict(source) if isinstance(source, str | Path) else unwrap(source)
    report = LoadReport()
    sd = _backbone_keys(raw)
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
            value = _resize_pos_embed(value, (side, side), model.grid, antialias="register_tokens" in sd)
            report.resized[key] = (tuple(sd[key].shape), tuple(want))
        elif key == "patch_embed.proj.weight" and value.shape[:2] == want[:2] and value.shape != want:
            value = resize_patch_kernel(value, want[-1])
            report.resized[key] = (tuple(sd[key].shape), tuple(want))
        if value.shape != want:
            report.mismatched[key] = (tuple(value.shape), tuple(want))
            continue
        new_state[key] = value.to(target[key].dtype)
        report.loaded.append(key)
    derived = {"rope_embed.periods"}  # computed from the RoPE base, absent from Hugging Face files
    report.missing = sorted(set(target) - set(new_state) - derived)
    if strict and not report.clean:
        raise ValueError(f"checkpoint does not fit the backbone: {report.summary()}")
    model.load_state_dict(new_state, strict=False)
    return report
