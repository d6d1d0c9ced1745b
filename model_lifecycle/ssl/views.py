"""Multi-crop views for DINO, made on the device from a batch of uint8 frames.

Two global crops at the model's input size (40-100 % of the frame) and several local crops at a
quarter of its area (10-40 %), each randomly flipped, colour-jittered, blurred or greyed; the
second global crop is sometimes solarised (as in DINO). Crops are one `grid_sample` per view, so
a batch costs a few kernels on a GPU and a few milliseconds per frame on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class ViewSpec:
    global_size: tuple[int, int]
    """(height, width) of the global crops: the model's input size."""
    local_size: tuple[int, int]
    """(height, width) of the local crops; multiples of the patch size."""
    local_crops: int = 6
    global_scale: tuple[float, float] = (0.4, 1.0)
    local_scale: tuple[float, float] = (0.1, 0.4)


def local_size_for(input_size: tuple[int, int], patch: int) -> tuple[int, int]:
    """Half the input's height and width, rounded down to whole patches (at least one)."""
    return tuple(max(patch, (s // 2) // patch * patch) for s in input_size)  # type: ignore[return-value]


def _crop(images: Tensor, size: tuple[int, int], scale: tuple[float, float], gen: torch.Generator) -> Tensor:
    """Random resized crops (area share in `scale`, aspect within ±25 % of the frame's), mirrored
    half the time, resampled bilinearly to `size`."""
    b = images.shape[0]
    area = torch.empty(b).uniform_(*scale, generator=gen)
    log_ratio = torch.empty(b).uniform_(-0.223, 0.223, generator=gen)  # ln(0.8)..ln(1.25)
    sw = (area * log_ratio.exp()).sqrt().clamp(max=1.0)
    sh = (area / log_ratio.exp()).sqrt().clamp(max=1.0)
    cx = (torch.rand(b, generator=gen) * 2 - 1) * (1 - sw)
    cy = (torch.rand(b, generator=gen) * 2 - 1) * (1 - sh)
    flip = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = sw * flip, cx
    theta[:, 1, 1], theta[:, 1, 2] = sh, cy
    grid = F.affine_grid(theta.to(images.device), [b, 3, *size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _blur(images: Tensor, sigma: Tensor) -> Tensor:
    """Separable Gaussian blur with one sigma (pixels) per image; sigma 0 leaves the image as it is."""
    radius = 4
    x = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    s = sigma.to(images.device, images.dtype).clamp(min=1e-3)[:, None]
    k = torch.exp(-(x[None] ** 2) / (2 * s**2))
    k = k / k.sum(1, keepdim=True)  # (B, K)
    b, c, h, w = images.shape
    flat = images.reshape(1, b * c, h, w)
    kk = k.repeat_interleave(c, 0)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"), kk[:, None, None, :], groups=b * c)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"), kk[:, None, :, None], groups=b * c)
    return flat.reshape(b, c, h, w)


def _photometric(images: Tensor, gen: torch.Generator, blur_p: float, solarize_p: float) -> Tensor:
    """Brightness/contrast/saturation jitter (p 0.8), greyscale (p 0.2), blur, solarisation on [0, 1] images."""
    b = images.shape[0]
    dev = images.device

    def u(lo: float, hi: float) -> Tensor:
        return torch.empty(b).uniform_(lo, hi, generator=gen).to(dev).view(b, 1, 1, 1)

    def p(prob: float) -> Tensor:
        return (torch.rand(b, generator=gen) < prob).to(dev).view(b, 1, 1, 1)

    jitter = p(0.8)
    grey = images.mean(1, keepdim=True)
    x = images * torch.where(jitter, u(0.6, 1.4), 1.0)
    mean = x.mean((1, 2, 3), keepdim=True)
    x = (x - mean) * torch.where(jitter, u(0.6, 1.4), 1.0) + mean
    grey = x.mean(1, keepdim=True)
    x = grey + (x - grey) * torch.where(jitter, u(0.6, 1.4), 1.0)
    x = torch.where(p(0.2), x.mean(1, keepdim=True).expand_as(x), x).clamp(0, 1)
    sigma = torch.empty(b).uniform_(0.1, 2.0, generator=gen) * (torch.rand(b, generator=gen) < blur_p)
    x = _blur(x, sigma).clamp(0, 1)  # the kernel's float sum may exceed 1 by an ulp
    return torch.where(p(solarize_p) & (x >= 0.5), 1 - x, x)


def multi_crop(images: Tensor, spec: ViewSpec, gen: torch.Generator) -> list[Tensor]:
    """uint8 (B, 3, H, W) frames -> [global 1, global 2, local 1..n], each float in [0, 1]."""
    x = images.float() / 255.0
    views = [
        _photometric(_crop(x, spec.global_size, spec.global_scale, gen), gen, 1.0, 0.0),
        _photometric(_crop(x, spec.global_size, spec.global_scale, gen), gen, 0.1, 0.2),
    ]
    views += [
        _photometric(_crop(x, spec.local_size, spec.local_scale, gen), gen, 0.5, 0.0)
        for _ in range(spec.local_crops)
    ]
    return views
