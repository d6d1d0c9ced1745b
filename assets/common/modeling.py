"""Running model versions from the orchestration side, through the edge's engine API.

The same engines as the edge (INT8 ONNX when the version has it, else FP32 ONNX, else the torch
weights), so what the loop measures is what the facilities run.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from edge.backends import Engine

REFERENCE_FILE = "reference_embeddings.npy"
REFERENCE_FRAMES = 48


def version_engine(path: Path, prefer_int8: bool = True) -> tuple[Engine, str]:
    """An engine for a version directory and the name of what it runs."""
    from edge.backends import EngineSpec, load_engine
    from edge.model.version import read_version

    version = read_version(path)
    if prefer_int8 and version.int8_onnx_path.exists():
        spec = EngineSpec("onnxruntime", "int8", threads=2)
    elif version.onnx_path.exists():
        spec = EngineSpec("onnxruntime", "fp32", threads=2)
    else:
        spec = EngineSpec("torch", "fp32")
    return load_engine(path, spec, warmup=False), f"{spec.name}-{spec.precision}"


def compute_reference_embeddings(path: Path, frames: int = REFERENCE_FRAMES, seed: int = 1) -> np.ndarray:
    """Embeddings of the packages the model finds on frames of its training distribution."""
    from edge.model.version import read_version
    from model_lifecycle.evaluate import detect
    from model_lifecycle.sources import training_frames

    version = read_version(path)
    engine, _ = version_engine(path)
    source = training_frames(seed)
    detections = detect(engine, [source(i) for i in range(frames)])
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
