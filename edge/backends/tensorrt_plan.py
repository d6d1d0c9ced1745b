"""What the TensorRT engine decides without TensorRT: which engine file fits, how a batch is cut
to the engine's profile, and the host dtype of each output (tested on machines without TensorRT).

An engine is only valid for the model it was built from, the GPU model and the TensorRT version
that built it. The model store keys engines by all three (plus precision and the profile's
largest batch) under ``<version>/engines/<key>.engine``, so a retrained model, another GPU or a
TensorRT upgrade finds no stale engine: it finds none, and says which key it looked for.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np

ENGINES_DIR = "engines"
_DTYPES: dict[str, type[np.generic]] = {
    "FLOAT": np.float32,
    "HALF": np.float16,
    "BF16": np.float32,
    "INT32": np.int32,
    "INT8": np.int8,
}
"""TensorRT DataType names → numpy dtype of the host copy (bf16 has no numpy type: copied as float32)."""


def model_digest(version_dir: Path, graph: str) -> str:
    """Content hash of the model an engine is built from (config + ONNX graph): a retrained
    version under the same name gets another digest."""
    h = hashlib.sha256()
    for name in ("config.json", graph):
        h.update(name.encode())
        h.update((version_dir / name).read_bytes())
    return h.hexdigest()[:16]


def engine_prefix(digest: str, precision: str, gpu: str, trt_version: str) -> str:
    """File-name-safe key of the engines of one model, precision, GPU model and TensorRT version."""
    gpu_slug = re.sub(r"[^A-Za-z0-9]+", "-", gpu).strip("-").lower()
    return f"{digest}-{precision}-{gpu_slug}-trt{trt_version}"


def engine_path(version_dir: Path, prefix: str, max_batch: int) -> Path:
    """Where a build for that key with a profile up to `max_batch` is stored."""
    return version_dir / ENGINES_DIR / f"{prefix}-b{max_batch}.engine"


def pick_engine(version_dir: Path, prefix: str) -> Path | None:
    """The stored engine of that key with the largest batch profile, if any."""
    found = []
    for path in (version_dir / ENGINES_DIR).glob(f"{prefix}-b*.engine"):
        batch = path.stem.removeprefix(f"{prefix}-b")
        if batch.isdigit():
            found.append((int(batch), path))
    return max(found)[1] if found else None


def chunks(n: int, profile_max: int) -> list[slice]:
    """Slices of a batch of `n` that each fit the engine's optimisation profile."""
    if profile_max < 1:
        raise ValueError(f"profile max batch must be >= 1, got {profile_max}")
    return [slice(i, min(i + profile_max, n)) for i in range(0, n, profile_max)]


def host_dtype(trt_dtype_name: str) -> type[np.generic]:
    """numpy dtype for an output of this TensorRT DataType name (e.g. "HALF")."""
    try:
        return _DTYPES[trt_dtype_name.upper()]
    except KeyError:
        raise ValueError(f"unsupported TensorRT output dtype {trt_dtype_name}") from None
