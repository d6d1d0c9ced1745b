"""Unlabeled frames from image folders (what the edges' frame sampler ships), at the model's input size."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from edge.model.preprocess import resize_rgb

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def image_files(folders: Iterable[Path]) -> list[Path]:
    """Every image under `folders` (recursively), in path order; a missing folder is an error."""
    files: list[Path] = []
    for folder in folders:
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such folder of unlabeled frames")
        files += sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return files


def read_frames(files: Iterable[Path], input_size: tuple[int, int]) -> list[np.ndarray]:
    """RGB uint8 (3, h, w) arrays; an unreadable file is an error naming it."""
    out = []
    for path in files:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"{path}: not a readable image")
        out.append(resize_rgb(image, input_size))
    return out


def spread(items: list[Path], limit: int | None) -> list[Path]:
    """At most `limit` items, evenly spaced (every camera and hour keeps its share)."""
    if limit is None or len(items) <= limit:
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, limit).round().astype(int)]
