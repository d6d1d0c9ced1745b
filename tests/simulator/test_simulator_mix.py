"""Class mixes, zones and drift knobs behave as configured, measured on the rendered output."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import cv2
import numpy as np

from contract.vocabulary import CONDITIONS, PACKAGE_TYPES
from simulator import PRESETS, ConveyorSimulator, SimConfig


def _packages(sim: ConveyorSimulator, frames: int) -> dict:
    seen = {}
    for i in range(frames):
        for t in sim.render_iid(i).truth:
            seen[t.package_id] = t
    return seen


def _within(counts: Counter, n: int, mix: Mapping[str, float] | None, label: str) -> None:
    assert mix is not None
    for name, p in mix.items():
        sigma = (p * (1 - p) / n) ** 0.5
        assert abs(counts[name] / n - p) < 4 * sigma + 0.01, f"{label} {name}: {counts[name]}/{n} vs p={p}"


def test_damage_mix_and_misplaced_share_are_respected(small: SimConfig) -> None:
    mix = {"ok": 0.5, "crushed": 0.2, "torn": 0.1, "wet": 0.1, "open": 0.1}
    cfg = small.model_copy(update={"damage_mix": mix, "misplaced_fraction": 0.2})
    seen = _packages(ConveyorSimulator(cfg, seed=21), 50)
    n = len(seen)
    assert n >= 300
    _within(Counter(t.condition for t in seen.values()), n, mix, "condition")
    placement = Counter("misplaced" if t.zone != t.expected_zone else "routed" for t in seen.values())
    _within(placement, n, {"misplaced": 0.2}, "placement")
    assert {t.package_type for t in seen.values()} == set(PACKAGE_TYPES)
    assert {t.zone for t in seen.values()} == set(cfg.zones)


def test_drift_damage_mix_overrides_the_config(small: SimConfig) -> None:
    seen = _packages(ConveyorSimulator(small, seed=22, drift="damage_shift"), 40)
    _within(
        Counter(t.condition for t in seen.values()), len(seen), PRESETS["damage_shift"].damage_mix, "drift"
    )


def test_six_weeks_later_shifts_image_statistics(small: SimConfig) -> None:
    def stats(drift: str) -> np.ndarray:
        sim = ConveyorSimulator(small, seed=23, drift=drift)
        rows = []
        for i in range(8):
            img = sim.render_iid(i).image
            grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
            b, _, r = img.reshape(-1, 3).mean(axis=0)
            rows.append([grey.mean(), cv2.Laplacian(grey, cv2.CV_64F).var(), r / b])
        return np.mean(rows, axis=0)

    base, drifted = stats("none"), stats("six_weeks_later")
    assert drifted[0] < 0.85 * base[0], "not darker"
    assert drifted[1] < 0.7 * base[1], "not blurrier"
    assert drifted[2] > 1.15 * base[2], "not warmer"


def test_new_packages_drift_brings_unseen_skus(small: SimConfig) -> None:
    catalogue = {t.sku for t in _packages(ConveyorSimulator(small, seed=24), 20).values()}
    drifted = _packages(ConveyorSimulator(small, seed=24, drift="new_packages"), 20).values()
    novel = [t for t in drifted if t.sku.startswith("SKU-N")]
    assert not any(s.startswith("SKU-N") for s in catalogue)
    assert 0.25 < len(novel) / len(drifted) < 0.55
    assert all(t.package_type in PACKAGE_TYPES and t.condition in CONDITIONS for t in novel)


def test_camera_bump_keeps_boxes_in_frame_and_on_packages(small: SimConfig) -> None:
    sim = ConveyorSimulator(small.model_copy(update={"noise": 0.0}), seed=25, drift="camera_bump")
    frame, empty = sim.render(20), sim.render_empty(20)
    changed = np.abs(frame.image.astype(int) - empty.image.astype(int)).max(axis=2) > 12
    assert frame.truth
    for t in frame.truth:
        b = t.box
        assert 0 <= b.x1 < b.x2 <= small.width and 0 <= b.y1 < b.y2 <= small.height
        assert changed[int(b.y1) : int(b.y2), int(b.x1) : int(b.x2)].mean() > 0.5
