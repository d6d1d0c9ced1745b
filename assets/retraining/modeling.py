"""Running model versions from the orchestration side, through the model engineer's API.

The same engines as the edge (INT8 ONNX when the version has it, else FP32 ONNX, else the torch
weights), so what the loop measures is what the facilities run.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from model_lifecycle.runners import Runner

REFERENCE_FILE = "reference_embeddings.npy"
REFERENCE_FRAMES = 48


def version_runner(path: Path, prefer_int8: bool = True) -> tuple[Runner, str]:
    """An engine for a version directory and the name of what it runs."""
    from edge.model.version import load_detector, read_version
    from model_lifecycle.runners import onnx_runner, torch_runner

    version = read_version(path)
    if prefer_int8 and version.int8_onnx_path.exists():
        return onnx_runner(version.int8_onnx_path, threads=2), "onnxruntime-int8"
    if version.onnx_path.exists():
        return onnx_runner(version.onnx_path, threads=2), "onnxruntime-fp32"
    return torch_runner(load_detector(path)), "torch-fp32"


def compute_reference_embeddings(path: Path, frames: int = REFERENCE_FRAMES, seed: int = 1) -> np.ndarray:
    """Embeddings of the packages the model finds on frames of its training distribution."""
    from edge.model.version import read_version
    from model_lifecycle.evaluate import detect
    from model_lifecycle.sources import training_frames

    version = read_version(path)
    runner, _ = version_runner(path)
    source = training_frames(seed)
    detections = detect(runner, [source(i) for i in range(frames)], version.input_size)
    vectors = [
        d.embedding for per_frame in detections for d in per_frame if d.score >= version.score_threshold
    ]
    if not vectors:
        raise ValueError(
            f"model {path} detected nothing on {frames} training frames; no reference embeddings"
        )
    return np.stack(vectors).astype(np.float32)


def reference_embeddings(path: Path, cache_dir: Path) -> np.ndarray:
    """The version's training-reference embeddings: shipped with it, else computed once and cached."""
    from edge.model.version import read_version

    shipped = path / REFERENCE_FILE
    if shipped.exists():
        return np.load(shipped)
    weights = read_version(path).weights_path
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
    cached = cache_dir / f"{path.name}-{digest}.npy"
    if cached.exists():
        return np.load(cached)
    embeddings = compute_reference_embeddings(path)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp.npy")
    np.save(tmp, embeddings)
    tmp.replace(cached)
    return embeddings
