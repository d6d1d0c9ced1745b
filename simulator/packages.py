"""Render one package spec into a sprite: colour + alpha (with drop shadow) + its body outline.

Each package is rendered once, unrotated, by a handful of OpenCV draw calls on a small canvas,
damaged, rotated, and then only translated and alpha-blended while it rides the belt.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from simulator.catalogue import MARGIN, PackageSpec
from simulator.damage import apply_damage
from simulator.textures import grain

Rect = tuple[int, int, int, int]


@dataclass(frozen=True)
class Sprite:
    """A rendered package, ready to composite; coordinates are sprite pixels."""

    premult: np.ndarray
    """uint8 (h, w, 3): colour × alpha (the shadow contributes black)."""
    inv_alpha: np.ndarray
    """uint8 (h, w, 3): 255 × (1 - alpha), alpha covering body and shadow."""
    col_cum: np.ndarray
    """int64 (w + 1,): cumulative count of body pixels per column (for clipped visibility)."""
    col_top: np.ndarray
    col_bottom: np.ndarray
    """int (w,): first and last body row per column (top = h, bottom = -1 where empty)."""

    @property
    def size(self) -> tuple[int, int]:
        h, w = self.inv_alpha.shape[:2]
        return w, h

    def visible_box(self, x: int, y: int, width: int) -> tuple[tuple[int, int, int, int] | None, float]:
        """Body box in frame pixels when placed at (x, y) and clipped to [0, width) horizontally.

        Returns (box or None, visible fraction of the body's area).
        """
        w = self.size[0]
        c0, c1 = max(0, -x), min(w, width - x)
        total = self.col_cum[-1]
        if c1 <= c0 or total == 0:
            return None, 0.0
        frac = float(self.col_cum[c1] - self.col_cum[c0]) / float(total)
        cols = np.nonzero(self.col_bottom[c0:c1] >= 0)[0]
        if cols.size == 0:
            return None, 0.0
        top = int(self.col_top[c0:c1].min())
        bottom = int(self.col_bottom[c0:c1].max()) + 1
        return (x + c0 + int(cols[0]), y + top, x + c0 + int(cols[-1]) + 1, y + bottom), frac

    def outline(self, c0: int = 0, c1: int | None = None) -> np.ndarray:
        """float32 (k, 2): top and bottom body points of columns [c0, c1), for warped boxes."""
        cols = np.arange(c0, self.size[0] if c1 is None else c1)
        cols = cols[self.col_bottom[cols] >= 0]
        top = np.stack([cols, self.col_top[cols]], 1)
        bottom = np.stack([cols + 1, self.col_bottom[cols] + 1], 1)
        return np.concatenate([top, bottom]).astype(np.float32)


def render_sprite(spec: PackageSpec) -> Sprite:
    """Draw the package body, its details and damage, then rotate and add a soft drop shadow."""
    rng = np.random.default_rng(spec.detail_seed)
    cw, ch = spec.canvas
    img = np.zeros((ch, cw, 3), np.float32)
    mask = np.zeros((ch, cw), np.uint8)
    x0 = MARGIN + spec.flap[0]
    rect = (x0, MARGIN, x0 + spec.width, MARGIN + spec.height)
    _DRAW[spec.sku.style](img, mask, rect, spec, rng)
    apply_damage(img, mask, rect, spec, rng)
    img, alpha = _rotate(img, mask, spec.angle)
    return _finish(img, alpha, spec.shadow, spec.scale)


def _rotate(img: np.ndarray, mask: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Rotate colour and mask together (one 4-channel warp); returns colour and alpha in [0, 1]."""
    ch, cw = mask.shape
    a = np.deg2rad(angle)
    c, s = abs(np.cos(a)), abs(np.sin(a))
    nw, nh = int(np.ceil(cw * c + ch * s)), int(np.ceil(cw * s + ch * c))
    m = cv2.getRotationMatrix2D((cw / 2, ch / 2), angle, 1.0)
    m[0, 2] += nw / 2 - cw / 2
    m[1, 2] += nh / 2 - ch / 2
    rgba = cv2.merge([*cv2.split(img), mask.astype(np.float32) * (1 / 255)])
    rgba = cv2.warpAffine(rgba, m, (nw, nh), flags=cv2.INTER_LINEAR)
    return rgba[..., :3], np.ascontiguousarray(rgba[..., 3])


def _finish(img: np.ndarray, alpha: np.ndarray, shadow: int, scale: float) -> Sprite:
    nh, nw = alpha.shape
    body = alpha > 0.5
    full = np.zeros((nh + shadow, nw + shadow), np.float32)
    full[shadow:, shadow // 2 : shadow // 2 + nw] = alpha
    shade = cv2.GaussianBlur(full, (0, 0), max(1.0, 2.0 * scale)) * 0.5
    obj = np.zeros_like(full)
    obj[:nh, :nw] = alpha
    a = np.maximum(obj, shade)
    premult = np.zeros((nh + shadow, nw + shadow, 3), np.uint8)
    premult[:nh, :nw] = cv2.multiply(
        np.ascontiguousarray(img), cv2.merge([alpha, alpha, alpha]), dtype=cv2.CV_8U
    )
    body_full = np.zeros(full.shape, bool)
    body_full[:nh, :nw] = body
    counts = body_full.sum(axis=0)
    empty = counts == 0
    top = np.where(empty, full.shape[0], body_full.argmax(axis=0))
    bottom = np.where(empty, -1, full.shape[0] - 1 - body_full[::-1].argmax(axis=0))
    return Sprite(
        premult=premult,
        inv_alpha=cv2.merge([cv2.convertScaleAbs(a, alpha=-255, beta=255)] * 3),
        col_cum=np.concatenate([[0], np.cumsum(counts)]),
        col_top=top,
        col_bottom=bottom,
    )


def _shade(c: tuple[int, int, int], f: float) -> tuple[float, float, float]:
    return (min(255.0, c[0] * f), min(255.0, c[1] * f), min(255.0, c[2] * f))


def _fill_material(img: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], rng, grain_amp: float):
    """Fill the canvas with the colour, a soft light falloff and material grain (alpha cuts it)."""
    h, w = mask.shape
    gx, gy = rng.uniform(-0.1, 0.1, 2)
    light = grain(h, w, 0.8, rng) * grain_amp
    light += (np.arange(w, dtype=np.float32) * (gx / w) - gx / 2)[None, :]
    light += (np.arange(h, dtype=np.float32) * (gy / h) + (1 - gy / 2))[:, None]
    img[:] = cv2.merge([light * float(c) for c in colour])


def _label(img: np.ndarray, rect: Rect, rng: np.random.Generator, scale: float) -> None:
    """A white shipping label with address lines and a barcode."""
    x0, y0, x1, y1 = rect
    bw, bh = x1 - x0, y1 - y0
    lw, lh = int(bw * rng.uniform(0.28, 0.4)), int(bh * rng.uniform(0.38, 0.52))
    lx = x0 + int(rng.integers(2, max(3, bw - lw - 2)))
    ly = y0 + int(rng.integers(2, max(3, bh - lh - 2)))
    cv2.rectangle(img, (lx, ly), (lx + lw, ly + lh), (238, 240, 240), -1)
    cv2.rectangle(img, (lx, ly), (lx + lw, ly + lh), (175, 178, 180), 1)
    n_lines = 2 if lh < 26 * scale else 3
    for i in range(n_lines):
        yy = ly + 3 + i * max(3, round(4 * scale))
        cv2.line(img, (lx + 3, yy), (lx + 3 + int((lw - 6) * rng.uniform(0.4, 0.95)), yy), (60, 60, 60), 1)
    by0 = ly + 3 + n_lines * max(3, round(4 * scale)) + 1
    if by0 < ly + lh - 3:
        bars = rng.random(max(1, lw - 6)) < 0.5
        cols = np.nonzero(bars)[0] + lx + 3
        img[by0 : ly + lh - 2, cols] = 25


def _box(img: np.ndarray, mask: np.ndarray, rect: Rect, spec: PackageSpec, rng: np.random.Generator) -> None:
    x0, y0, x1, y1 = rect
    cv2.rectangle(mask, (x0, y0), (x1 - 1, y1 - 1), 255, -1)
    _fill_material(img, mask, spec.colour, rng, 0.05)
    cv2.rectangle(img, (x0, y0), (x1 - 1, y1 - 1), _shade(spec.colour, 0.62), max(1, round(spec.scale)))
    ym = (y0 + y1) // 2
    cv2.line(img, (x0 + 1, ym), (x1 - 2, ym), _shade(spec.colour, 0.5), 1)
    tw = max(4, round((y1 - y0) * rng.uniform(0.14, 0.22)))
    tape = {"tan": (120, 170, 205), "clear": _shade(spec.colour, 1.22), "branded": (215, 200, 190)}
    if spec.sku.tape in tape:
        t0 = ym - tw // 2
        img[t0 : t0 + tw, x0 + 1 : x1 - 1] = tape[spec.sku.tape]
        img[t0 : t0 + 1, x0 + 1 : x1 - 1] *= 1.12
        if spec.sku.tape == "branded":
            for xx in range(x0 + 4, x1 - 4, max(8, round(12 * spec.scale))):
                cv2.line(img, (xx, t0 + 1), (xx + 3, t0 + tw - 2), (150, 60, 20), 1)
    if spec.sku.label:
        _label(img, rect, rng, spec.scale)


def _vivid_box(img: np.ndarray, mask: np.ndarray, rect: Rect, spec: PackageSpec, rng) -> None:
    """Branded retail box: saturated print, a logo band, a swoosh and a dot."""
    x0, y0, x1, y1 = rect
    cv2.rectangle(mask, (x0, y0), (x1 - 1, y1 - 1), 255, -1)
    _fill_material(img, mask, spec.colour, rng, 0.02)
    accent = (255 - spec.colour[0], 255 - spec.colour[1] // 2, 230)
    band = (x0 + (x1 - x0) // 5, x0 + (x1 - x0) // 5 + max(6, (x1 - x0) // 6))
    img[y0:y1, band[0] : band[1]] = accent
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    cv2.ellipse(img, (cx + (x1 - x0) // 6, cy), ((x1 - x0) // 4, (y1 - y0) // 4), 0, 200, 340, accent, 3)
    cv2.circle(img, (cx + (x1 - x0) // 5, cy - (y1 - y0) // 6), max(3, (y1 - y0) // 7), (250, 250, 250), -1)
    if spec.sku.label:
        _label(img, rect, rng, spec.scale)


def _tote(img: np.ndarray, mask: np.ndarray, rect: Rect, spec: PackageSpec, rng) -> None:
    """Reusable plastic tote seen from above: thick rim, ribbed floor, handle slots."""
    x0, y0, x1, y1 = rect
    r = max(3, round(6 * spec.scale))
    cv2.rectangle(mask, (x0, y0), (x1 - 1, y1 - 1), 255, -1)
    _fill_material(img, mask, spec.colour, rng, 0.01)
    inner = _shade(spec.colour, 0.55)
    cv2.rectangle(img, (x0 + r, y0 + r), (x1 - 1 - r, y1 - 1 - r), inner, -1)
    for xx in range(x0 + 2 * r, x1 - 2 * r, max(5, round(9 * spec.scale))):
        cv2.line(img, (xx, y0 + r + 2), (xx, y1 - r - 3), _shade(spec.colour, 0.42), 1)
    for hx in (x0 + r // 3, x1 - r + r // 3 - 1):
        cv2.rectangle(
            img, (hx, (y0 + y1) // 2 - r), (hx + max(1, r // 3), (y0 + y1) // 2 + r), (20, 20, 20), -1
        )


def _polybag(img: np.ndarray, mask: np.ndarray, rect: Rect, spec: PackageSpec, rng) -> None:
    x0, y0, x1, y1 = rect
    w, h = x1 - x0, y1 - y0
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    ex = np.sign(np.cos(t)) * np.abs(np.cos(t)) ** 0.35
    ey = np.sign(np.sin(t)) * np.abs(np.sin(t)) ** 0.35
    wobble = 1 - rng.uniform(0, 0.06, t.size)
    pts = np.stack([(x0 + x1) / 2 + ex * wobble * w / 2, (y0 + y1) / 2 + ey * wobble * h / 2], 1)
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 255)
    _fill_material(img, mask, spec.colour, rng, 0.03)
    if spec.sku.style == "patterned":
        _pattern(img, mask, rect, spec, rng)
    hi = np.zeros(mask.shape, np.float32)
    for _ in range(int(rng.integers(4, 8))):
        n = 4
        px = np.sort(rng.uniform(x0 + 3, x1 - 3, n)) if rng.random() < 0.5 else rng.uniform(x0 + 3, x1 - 3, n)
        py = rng.uniform(y0 + 3, y1 - 3, n)
        val = 1.0 if rng.random() < 0.65 else -0.7
        cv2.polylines(hi, [np.stack([px, py], 1).astype(np.int32)], False, val, max(1, round(2 * spec.scale)))
    cx, cy = int(rng.uniform(x0 + w * 0.25, x1 - w * 0.25)), int(rng.uniform(y0 + h * 0.3, y1 - h * 0.3))
    cv2.ellipse(hi, (cx, cy), (max(3, w // 6), max(2, h // 8)), float(rng.uniform(0, 180)), 0, 360, 1.6, -1)
    gloss = 70 if sum(spec.colour) < 600 else 40
    img += cv2.merge([cv2.GaussianBlur(hi, (0, 0), 1.6 * spec.scale) * gloss] * 3)
    seal = x0 + max(3, w // 14) if rng.random() < 0.5 else x1 - max(3, w // 14)
    cv2.line(img, (seal, y0 + 3), (seal, y1 - 4), _shade(spec.colour, 0.75), max(1, round(2 * spec.scale)))
    if spec.sku.label:
        _label(img, rect, rng, spec.scale)


def _pattern(img: np.ndarray, mask: np.ndarray, rect: Rect, spec: PackageSpec, rng) -> None:
    """Printed pattern of a novel mailer bag: stripes, dots or chevrons in a contrast colour."""
    x0, y0, x1, y1 = rect
    ink = (240, 240, 240) if sum(spec.colour) < 380 else (30, 30, 30)
    kind = int(rng.integers(3))
    step = max(6, round(11 * spec.scale))
    if kind == 0:
        for k in range(x0 - (y1 - y0), x1, step):
            cv2.line(img, (k, y1), (k + (y1 - y0), y0), ink, max(2, step // 3))
    elif kind == 1:
        for yy in range(y0 + step // 2, y1, step):
            for xx in range(x0 + step // 2 + (yy // step % 2) * step // 2, x1, step):
                cv2.circle(img, (xx, yy), max(1, step // 4), ink, -1)
    else:
        for yy in range(y0, y1 + step, step):
            pts = np.array(
                [[xx, yy + (step // 2 if (xx - x0) // step % 2 else 0)] for xx in range(x0, x1 + step, step)]
            )
            cv2.polylines(img, [pts.astype(np.int32)], False, ink, 2)


def _envelope(img: np.ndarray, mask: np.ndarray, rect: Rect, spec: PackageSpec, rng) -> None:
    x0, y0, x1, y1 = rect
    w, h = x1 - x0, y1 - y0
    cv2.rectangle(mask, (x0, y0), (x1 - 1, y1 - 1), 255, -1)
    padded = spec.colour[1] > 180 and spec.colour[2] > 220 and spec.colour[0] < 150
    _fill_material(img, mask, spec.colour, rng, 0.09 if padded else 0.025)
    edge = _shade(spec.colour, 0.72)
    cv2.rectangle(img, (x0, y0), (x1 - 1, y1 - 1), edge, 1)
    apex = x0 + int(w * rng.uniform(0.3, 0.42))
    cv2.line(img, (x0, y0), (apex, (y0 + y1) // 2), edge, 1)
    cv2.line(img, (x0, y1 - 1), (apex, (y0 + y1) // 2), edge, 1)
    sx = x1 - max(6, w // 8) - 3
    cv2.rectangle(img, (sx, y0 + 3), (x1 - 4, y0 + 3 + max(5, h // 5)), (70, 60, 190), -1)
    if spec.sku.label:
        _label(img, (apex, y0, x1 - max(6, w // 8) - 4, y1), rng, spec.scale)
    else:
        for i in range(3):
            yy = y0 + h // 2 + i * max(3, round(4 * spec.scale))
            cv2.line(img, (apex + 6, yy), (apex + 6 + int(w * rng.uniform(0.2, 0.4)), yy), (50, 50, 50), 1)


def _standard(img: np.ndarray, mask: np.ndarray, rect: Rect, spec: PackageSpec, rng) -> None:
    {"box": _box, "polybag": _polybag, "envelope": _envelope}[spec.sku.package_type](
        img, mask, rect, spec, rng
    )


_DRAW = {"standard": _standard, "vivid": _vivid_box, "patterned": _polybag, "tote": _tote}
