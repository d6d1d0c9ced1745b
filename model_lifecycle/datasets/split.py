"""Train/validation split by package: frames that share a package (or track) id stay on one side.

Frames are joined into groups through the package ids they show (a tracked package seen in twenty
frames ties those twenty frames together); each group goes to validation when a hash of its
smallest package id (or, for a frame without packages, its file) falls under `val_fraction`, so
the split is deterministic, independent of frame order, and stable as a dataset grows.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any


def _find(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def split_by_package(
    records: Sequence[dict[str, Any]], val_fraction: float, seed: int = 0
) -> tuple[list[int], list[int]]:
    """(train indices, validation indices) of annotation records; no package id is on both sides."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    parent = list(range(len(records)))
    first_seen: dict[str, int] = {}
    for i, rec in enumerate(records):
        for p in rec["packages"]:
            j = first_seen.setdefault(p["package_id"], i)
            parent[_find(parent, i)] = _find(parent, j)
    keys: dict[int, str] = {}
    for i, rec in enumerate(records):
        root = _find(parent, i)
        key = min((p["package_id"] for p in rec["packages"]), default=f"file:{rec.get('file', i)}")
        keys[root] = min(keys.get(root, key), key)
    val_roots = {
        root
        for root, key in keys.items()
        if zlib.crc32(f"{seed}:{key}".encode()) % 10_000 < val_fraction * 10_000
    }
    if val_fraction > 0 and not val_roots and len(keys) > 1:
        val_roots = {min(keys, key=lambda r: zlib.crc32(f"{seed}:{keys[r]}".encode()))}
    if len(val_roots) == len(keys) and len(keys) > 1:
        val_roots.discard(next(iter(val_roots)))
    train = [i for i in range(len(records)) if _find(parent, i) not in val_roots]
    val = [i for i in range(len(records)) if _find(parent, i) in val_roots]
    return train, val
