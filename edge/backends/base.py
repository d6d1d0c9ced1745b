"""The engine interface, the registry, and the model-version files an engine loads.

An engine maps a preprocessed float32 batch (B, 3, H, W) to the detector's dense maps
(`edge.model.postprocess.OUTPUT_NAMES`); decoding is shared (`postprocess.decode`), so engines
stay thin and interchangeable. `prepare` turns camera frames into that batch where the engine
runs: on the CPU by default (`edge.model.preprocess`), on the GPU for the torch engine on CUDA.
"""

from __future__ import annotations

import importlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, TypeVar

import numpy as np

from edge.model.postprocess import INPUT_NAME, OUTPUT_NAMES
from edge.model.preprocess import preprocess
from edge.model.version import CONFIG_FILE, INT8_ONNX_FILE, ONNX_FILE


class EngineError(RuntimeError):
    """Inference failed (the service counts it and may roll the model back)."""


class ModelLoadError(EngineError):
    """A model version directory is missing, incomplete or corrupt."""


class EngineUnavailable(EngineError):
    """The engine's runtime (TensorRT, CUDA, ...) is not installed or cannot run here."""


ONNX_FILES = {"fp32": ONNX_FILE, "int8": INT8_ONNX_FILE}


@dataclass(frozen=True)
class ModelFiles:
    """A model version directory as the runtime sees it (config.json + engine-specific files)."""

    path: Path
    version: str
    input_size: tuple[int, int]
    score_threshold: float
    iou_threshold: float

    @classmethod
    def read(cls, path: Path | str, version: str | None = None) -> ModelFiles:
        """Read `config.json`; ModelLoadError names the directory when it is missing or corrupt."""
        path = Path(path)
        try:
            meta = json.loads((path / CONFIG_FILE).read_text())
            h, w = meta["model"]["input_size"]
            return cls(
                path=path,
                version=version or path.name,
                input_size=(int(h), int(w)),
                score_threshold=float(meta["score_threshold"]),
                iou_threshold=float(meta["iou_threshold"]),
            )
        except FileNotFoundError:
            raise ModelLoadError(f"{path}: not a model version directory (no {CONFIG_FILE})") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelLoadError(f"{path / CONFIG_FILE}: corrupt model config ({exc})") from None

    @classmethod
    def unsaved(
        cls, name: str, input_size: tuple[int, int], score_threshold: float = 0.3, iou_threshold: float = 0.5
    ) -> ModelFiles:
        """A model that is no version directory (yet): one being trained, or a loose exported file."""
        return cls(Path(name), name, input_size, score_threshold, iou_threshold)

    def file(self, name: str, hint: str = "") -> Path:
        """A file of the version, or ModelLoadError saying how to produce it."""
        p = self.path / name
        if not p.is_file():
            raise ModelLoadError(f"{p} does not exist{'; ' + hint if hint else ''}")
        return p

    def onnx(self, precision: str) -> Path:
        if precision not in ONNX_FILES:
            raise ModelLoadError(
                f"no ONNX model for precision {precision!r}; choose one of {sorted(ONNX_FILES)}"
            )
        return self.file(ONNX_FILES[precision], f"build it with `wv model export {self.path}`")


@dataclass(frozen=True)
class EngineSpec:
    name: str = "onnxruntime"
    precision: str = "fp32"
    device: str = "cpu"
    threads: int | None = None
    spin: bool = False
    """Let idle CPU worker threads spin between operators (faster alone, slower when the cores
    are shared with capture and tracking); ONNX Runtime only."""
    cuda_graphs: bool = False
    """Replay a CUDA graph per batch-size bucket (torch on CUDA)."""
    max_graph_batch: int = 256
    """The largest bucket; larger batches run in chunks of it."""


class Engine(ABC):
    """One loaded model on one runtime. `infer` is called from one thread at a time."""

    name: ClassVar[str]
    precisions: ClassVar[tuple[str, ...]]

    def __init__(self, model: ModelFiles, spec: EngineSpec) -> None:
        if spec.precision not in self.precisions:
            raise EngineError(
                f"engine {self.name} supports precision {list(self.precisions)}, not {spec.precision!r}"
            )
        self.model = model
        self.spec = spec
        self.precision = spec.precision

    @abstractmethod
    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """float32 (B, 3, H, W) (or what `prepare` returned) → {output name: float32 (B, C, h, w)}."""

    def prepare(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """BGR uint8 camera frames → this engine's input batch (the shared CPU path by default)."""
        return preprocess(images, self.model.input_size)

    def warmup(self, batch_sizes: tuple[int, ...] = (1,)) -> None:
        """Run dummy batches so the first real frame does not pay for lazy initialisation."""
        h, w = self.model.input_size
        for b in batch_sizes:
            self.infer(np.zeros((b, 3, h, w), dtype=np.float32))

    def close(self) -> None:  # noqa: B027 - engines without resources need not override
        """Release sessions/devices; the engine is unusable afterwards."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model.version!r}, {self.precision})"


_REGISTRY: dict[str, type[Engine]] = {}
E = TypeVar("E", bound=type[Engine])


def register(cls: E) -> E:
    """Class decorator: make an engine available under `cls.name`."""
    _REGISTRY[cls.name] = cls
    return cls


def engine_class(name: str) -> type[Engine]:
    """The engine registered as `name`, importing `edge.backends.<name>` on first use."""
    if name not in _REGISTRY:
        try:
            importlib.import_module(f"edge.backends.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"edge.backends.{name}":
                raise
        if name not in _REGISTRY:
            raise EngineError(f"unknown engine {name!r}; built in: onnxruntime, torch, tensorrt")
    return _REGISTRY[name]


def load_engine(model: ModelFiles | Path | str, spec: EngineSpec, warmup: bool = True) -> Engine:
    """Build an engine for a model version (and warm it up); raises ModelLoadError/EngineError."""
    files = model if isinstance(model, ModelFiles) else ModelFiles.read(model)
    engine = engine_class(spec.name)(files, spec)
    if warmup:
        try:
            # GPUs autotune kernels per input shape: pay for the usual batch sizes up front.
            engine.warmup((1, 2, 4, 8) if spec.device.startswith("cuda") else (1,))
        except Exception:
            engine.close()
            raise
    return engine


def check_outputs(outputs: dict[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
    """Reject malformed results (wrong keys, batch size, NaN) as an inference failure."""
    missing = [n for n in OUTPUT_NAMES if n not in outputs]
    if missing:
        raise EngineError(f"engine returned no {missing}")
    for name in OUTPUT_NAMES:
        arr = outputs[name]
        if arr.shape[0] != batch:
            raise EngineError(f"output {name} has batch {arr.shape[0]}, expected {batch}")
        if not np.isfinite(arr).all():
            raise EngineError(f"output {name} contains NaN or infinity")
    return outputs


__all__ = ["INPUT_NAME", "OUTPUT_NAMES"]
