"""Damage rendering: each condition gets a large, high-contrast cue a small ViT can learn.

crushed: a corner collapsed inwards (outline cut), dark creases fanning from it, shaded dent.
torn:    a jagged dark gash with a light fibrous rim and a peeled flap.
wet:     a dark irregular stain with soft edges and a darker tide line.
open:    a flap lifted outside the outline and the dark interior showing.
All work on the unrotated package canvas (float32 BGR + uint8 mask) before rotation.
"""

from __future__ import annotations

import cv2
import numpy as np

from simulator.catalogue import PackageSpec

Rect = tuple[int, int, int, int]
_INTERIOR = np.array([26, 28, 32], np.float32)


def apply_damage(
    img: np.ndarray, mask: np.ndarray, rect: Rect, spec: PackageSpec, rng: np.random.Generator
) -> None:
    """Render the spec's condition onto the package canvas (no-op for 'ok')."""
    fn = _DAMAGE.get(spec.condition)
    if fn is not None:
        fn(img, mask, rect, spec, rng)


def _crushed(
    img: np.ndarray, mask: np.ndarray, rect: Rect, spec: PackageSpec, rng: np.random.Generator
) -> None:
    x0, y0, x1, y1 = rect
    w, h = x1 - x0, y1 - y0
    d = rng.uniform(0.38, 0.52) * min(w, h)
    sx, sy = (1, 1) if rng.random() < 0.5 else (-1, 1)
    if rng.random() < 0.5:
        sy = -1
    cx, cy = (x0 if sx > 0 else x1 - 1), (y0 if sy > 0 else y1 - 1)
    inner = np.array([cx + sx * d * 0.55, cy + sy * d * 0.5])
    cut = np.array(
        [
            [cx - sx * 4, cy - sy * 4],
            [cx + sx * d * 1.3, cy - sy * 4],
            [cx + sx * d * 1.1, cy + sy * d * 0.15],
            inner + rng.uniform(-2, 2, 2),
            [cx + sx * d * 0.2, cy + sy * d * 0.95],
            [cx - sx * 4, cy + sy * d * 1.2],
        ]
    )
    cv2.fillPoly(mask, [np.round(cut).astype(np.int32)], 0)
    bow = (int(cx + sx * w * 0.55), cy)
    cv2.ellipse(mask, bow, (int(w * 0.3), max(2, int(h * 0.09))), 0, 0, 360, 0, -1)
    yy, xx = np.mgrid[0 : mask.shape[0], 0 : mask.shape[1]].astype(np.float32)
    dist = np.hypot(xx - inner[0], yy - inner[1])
    shade = (1 - 0.45 * np.clip(1 - dist / (2.2 * d), 0, 1)).astype(np.float32)
    img *= cv2.merge([shade] * 3)
    dark = tuple(float(c) * 0.3 for c in spec.colour)
    light = tuple(min(255.0, float(c) * 1.3 + 20) for c in spec.colour)
    t = max(2, round(2 * spec.scale))
    for _ in range(int(rng.integers(3, 6))):
        ang = np.arctan2(sy, sx) + rng.uniform(-0.9, 0.9)
        length = d * rng.uniform(1.0, 2.2)
        end = inner + length * np.array([np.cos(ang), np.sin(ang)])
        mid = (inner + end) / 2 + rng.uniform(-3, 3, 2)
        pts = np.round(np.stack([inner, mid, end])).astype(np.int32)
        cv2.polylines(img, [pts + 1], False, light, 1)
        cv2.polylines(img, [pts], False, dark, t)
    a = (x0 + int(w * rng.uniform(0.2, 0.5)), y0)
    b = (x0 + int(w * rng.uniform(0.5, 0.8)), y1 - 1)
    cv2.line(img, a, b, dark, t)


def _torn(img: np.ndarray, mask: np.ndarray, rect: Rect, spec: PackageSpec, rng: np.random.Generator) -> None:
    x0, y0, x1, y1 = rect
    w, h = x1 - x0, y1 - y0
    length = w * rng.uniform(0.5, 0.75)
    ang = rng.uniform(-0.45, 0.45)
    start = np.array(
        [x0 + rng.uniform(0.05, 0.45) * (w - length * np.cos(ang)) + 2, y0 + h * rng.uniform(0.3, 0.7)]
    )
    direction = np.array([np.cos(ang), np.sin(ang)])
    normal = np.array([-direction[1], direction[0]])
    n = 18
    t = np.linspace(0, 1, n)
    centre = start + length * t[:, None] * direction + normal * rng.uniform(-3, 3, (n, 1))
    half = (rng.uniform(2.0, 3.5) * spec.scale) * np.sin(np.pi * t) ** 0.5 + 0.6
    upper = centre + normal * (half * rng.uniform(0.6, 1.6, n))[:, None]
    lower = centre - normal * (half * rng.uniform(0.6, 1.6, n))[:, None]
    poly = np.round(np.concatenate([upper, lower[::-1]])).astype(np.int32)
    rim = tuple(min(255.0, float(c) * 1.25 + 45) for c in spec.colour)
    cv2.polylines(img, [poly], True, rim, max(2, round(2 * spec.scale)))
    cv2.fillPoly(img, [poly], tuple(float(v) for v in _INTERIOR))
    k = n // 2
    flap = np.round(np.stack([upper[k - 2], upper[k + 2], upper[k] + normal * 7 * spec.scale])).astype(
        np.int32
    )
    cv2.fillPoly(img, [flap], rim)


def _wet(img: np.ndarray, mask: np.ndarray, rect: Rect, spec: PackageSpec, rng: np.random.Generator) -> None:
    x0, y0, x1, y1 = rect
    w, h = x1 - x0, y1 - y0
    stain = np.zeros(mask.shape, np.float32)
    cx, cy = x0 + w * rng.uniform(0.3, 0.7), y0 + h * rng.uniform(0.35, 0.65)
    r = min(w, h) * rng.uniform(0.3, 0.42)
    for _ in range(int(rng.integers(5, 9))):
        ox, oy = rng.normal(0, r * 0.6, 2)
        axes = (int(r * rng.uniform(0.45, 1.0)), int(r * rng.uniform(0.35, 0.8)))
        cv2.ellipse(stain, (int(cx + ox), int(cy + oy)), axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    soft = cv2.GaussianBlur(stain, (0, 0), max(1.5, 2.5 * spec.scale))
    tide = np.clip(soft * (1 - soft) * 4, 0, 1)
    img *= cv2.merge([1 - 0.55 * soft - 0.2 * tide] * 3)
    for _ in range(int(rng.integers(2, 5))):
        dx, dy = rng.normal(0, r * 0.5, 2)
        cv2.circle(img, (int(cx + dx), int(cy + dy)), max(1, round(1.5 * spec.scale)), (200, 200, 205), -1)


def _open(img: np.ndarray, mask: np.ndarray, rect: Rect, spec: PackageSpec, rng: np.random.Generator) -> None:
    x0, y0, x1, y1 = rect
    w, h = x1 - x0, y1 - y0
    fl = max(spec.flap)
    right = spec.open_side > 0
    edge = x1 - 1 if right else x0
    out = edge + fl if right else edge - fl
    ptype = spec.sku.package_type
    depth = int(w * (0.5 if ptype == "box" else 0.35))
    ix0, ix1 = (x1 - depth, x1 - 2) if right else (x0 + 2, x0 + depth)
    inside = np.zeros(mask.shape, np.uint8)
    if ptype == "envelope":
        tri = np.array([[edge, y0 + 2], [edge, y1 - 3], [ix0 if right else ix1, (y0 + y1) // 2]], np.int32)
        cv2.fillPoly(inside, [tri], 255)
    else:
        cv2.rectangle(inside, (ix0, y0 + 3), (ix1, y1 - 4), 255, -1)
    grad = np.linspace(0.7, 1.5, mask.shape[1], dtype=np.float32)
    grad = grad[::-1] if right else grad
    interior = _INTERIOR[None, None, :] * grad[None, :, None]
    sel = inside > 0
    img[sel] = np.broadcast_to(interior, img.shape)[sel]
    if ptype != "envelope":
        wall = tuple(float(c) * 0.55 for c in spec.colour)
        cv2.rectangle(img, (ix0, y0 + 3), (ix1, y1 - 4), wall, max(1, round(2 * spec.scale)))
    skew = rng.uniform(-0.2, 0.2) * h
    flap = np.array(
        [[edge, y0 + 1], [edge, y1 - 2], [out, y1 - 2 - h * 0.15 + skew], [out, y0 + 1 + h * 0.15 + skew]]
    )
    if ptype == "envelope":
        flap = np.array([[edge, y0 + 1], [edge, y1 - 2], [out, (y0 + y1) / 2 + skew]])
    flap = np.round(flap).astype(np.int32)
    underside = tuple(min(255.0, float(c) * 1.18 + 15) for c in spec.colour)
    cv2.fillPoly(mask, [flap], 255)
    cv2.fillPoly(img, [flap], underside)
    cv2.polylines(img, [flap], True, tuple(float(c) * 0.5 for c in spec.colour), 1)
    cv2.line(
        img,
        (edge, y0 + 1),
        (edge, y1 - 2),
        tuple(float(c) * 0.35 for c in spec.colour),
        max(1, round(2 * spec.scale)),
    )


_DAMAGE = {"crushed": _crushed, "torn": _torn, "wet": _wet, "open": _open}
