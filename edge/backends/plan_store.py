"""Engines that run a plan built for one GPU (TensorRT): where the model store keeps the plans, and
the builder plugin that makes a missing one.

A plan is only valid for the model content it was built from, the GPU model and the library
version that built it, so it is stored under that key (``tensorrt_plan.engine_prefix``) in the
version directory: ``<version>/engines/<key>-b<max batch>.engine``. An edge configured for such an
engine takes the plan of its own key, or builds it with the engine's :class:`PlanBuilder` before
the version is loaded (``edge.hotswap``); ``wv model build-engine`` writes the same name ahead of
time. Plans built from content no longer in the directory (a retrained version under the same
name) can never be used again and are removed; plans of other GPUs or library versions belong to
other edges and are left alone.
"""

from __future__ import annotations

import logging
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, TypeVar

import numpy as np

from edge.backends.base import ModelFiles, ModelLoadError, engine_class
from edge.backends.tensorrt_plan import ENGINES_DIR, engine_path, engine_prefix, model_digest, pick_engine
from edge.model.version import ONNX_FILE

log = logging.getLogger(__name__)


class EngineBuildError(ModelLoadError):
    """No plan could be built for a version here (the version is refused; the running one stays)."""


@dataclass(frozen=True)
class BuildTarget:
    """What a plan is bound to besides the model: the GPU model and the building library's version."""

    gpu: str
    library_version: str


@dataclass(frozen=True)
class BuildOptions:
    precision: str = "fp16"
    batch_sizes: tuple[int, int, int] = (1, 8, 32)
    """(min, opt, max) batch of the optimisation profile."""
    workspace_bytes: int = 2 << 30
    calibration_batch: int = 8


class PlanBuilder(ABC):
    """Builds plans of one engine on this machine; one subclass per engine, registered with
    :func:`register_builder` in the engine's module."""

    engine: ClassVar[str]

    @abstractmethod
    def target(self, device: str) -> BuildTarget:
        """This machine's GPU model and library version; EngineUnavailable when it cannot build."""

    @abstractmethod
    def build(
        self,
        onnx: Path,
        dest: Path,
        input_size: tuple[int, int],
        options: BuildOptions,
        calibration: Sequence[np.ndarray] | None = None,
    ) -> None:
        """Write the serialised plan of the ONNX graph to `dest`."""


_BUILDERS: dict[str, type[PlanBuilder]] = {}
B = TypeVar("B", bound=type[PlanBuilder])


def register_builder(cls: B) -> B:
    """Class decorator: `cls` builds the plans of engine `cls.engine`."""
    _BUILDERS[cls.engine] = cls
    return cls


def builder_for(engine_name: str) -> PlanBuilder | None:
    """The plan builder of an engine, or None for engines that load the model files directly."""
    engine_class(engine_name)  # imports the engine's module, which registers its builder
    cls = _BUILDERS.get(engine_name)
    return cls() if cls is not None else None


def _prefix(version_dir: Path, precision: str, target: BuildTarget) -> str:
    try:
        digest = model_digest(version_dir, ONNX_FILE)
    except FileNotFoundError as exc:
        raise ModelLoadError(
            f"{version_dir}: no {Path(str(exc.filename)).name} to key a plan by; "
            f"export it with `wv model export {version_dir}`"
        ) from None
    return engine_prefix(digest, precision, target.gpu, target.library_version)


def plan_path(version_dir: Path, precision: str, target: BuildTarget, max_batch: int) -> Path:
    """Where the plan of this model, precision and target with a profile up to `max_batch` is stored."""
    return engine_path(version_dir, _prefix(version_dir, precision, target), max_batch)


def find_plan(model: ModelFiles, precision: str, target: BuildTarget) -> Path:
    """The stored plan of this model, precision and target (largest batch profile); ModelLoadError
    names the key it looked for otherwise."""
    prefix = _prefix(model.path, precision, target)
    found = pick_engine(model.path, prefix)
    if found is None:
        raise ModelLoadError(
            f"{model.path}: no plan for this model, GPU ({target.gpu}) and TensorRT "
            f"{target.library_version}: looked for {ENGINES_DIR}/{prefix}-b*.engine; "
            f"build it with `wv model build-engine {model.path}`"
        )
    return found


def remove_stale_plans(version_dir: Path) -> list[Path]:
    """Delete the plans built from content this directory no longer holds; returns them."""
    try:
        current = model_digest(version_dir, ONNX_FILE)
    except FileNotFoundError:
        return []
    stale = [p for p in (version_dir / ENGINES_DIR).glob("*.engine") if not p.name.startswith(f"{current}-")]
    for path in stale:
        path.unlink(missing_ok=True)
        log.info("removed stale plan %s (built from other model content)", path)
    return stale


@dataclass
class PlanOutcome:
    path: Path
    built: bool
    """False when a stored plan of the key was reused."""
    seconds: float = 0.0
    removed: list[Path] = field(default_factory=list)


def ensure_plan(
    model: ModelFiles,
    precision: str,
    device: str,
    max_batch: int,
    builder: PlanBuilder,
    building: Callable[[Path], None] | None = None,
) -> PlanOutcome:
    """The plan of this model for this machine: the stored one of its key, else one built now
    (`building` is told where, first). EngineBuildError says why none could be had."""
    try:
        prefix = _prefix(model.path, precision, builder.target(device))
    except Exception as exc:  # no library, no GPU, no ONNX graph to key by
        raise EngineBuildError(f"no {builder.engine} plan for {model.version} here: {exc}") from exc
    removed = remove_stale_plans(model.path)
    stored = pick_engine(model.path, prefix)
    if stored is not None:
        return PlanOutcome(stored, built=False, removed=removed)
    dest = engine_path(model.path, prefix, max_batch)
    options = BuildOptions(precision, (1, min(8, max_batch), max_batch))
    if building is not None:
        building(dest)
    started = time.monotonic()
    try:
        build_plan(builder, model.path / ONNX_FILE, dest, model.input_size, options)
    except Exception as exc:
        raise EngineBuildError(f"{builder.engine} plan build for {model.version} failed: {exc}") from exc
    return PlanOutcome(dest, built=True, seconds=time.monotonic() - started, removed=removed)


def build_plan(
    builder: PlanBuilder,
    onnx: Path,
    dest: Path,
    input_size: tuple[int, int],
    options: BuildOptions,
    calibration: Sequence[np.ndarray] | None = None,
) -> None:
    """Build into a temporary name and rename, so no reader ever finds a half-written plan (two
    edges building the same key at once each write a whole one; the last rename wins)."""
    partial = dest.with_name(f"{dest.name}.{os.getpid()}.partial")
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        builder.build(onnx, partial, input_size, options, calibration)
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)
