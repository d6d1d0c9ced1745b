"""Inference engines as plugins: one module per engine, each registering an `Engine` subclass.

`load_engine(model_dir, EngineSpec("onnxruntime", "int8"))` imports `edge.backends.onnxruntime`
on demand, so adding an engine means adding one module here; tests may register their own.
An engine that runs a plan built for one GPU (TensorRT) registers a `plan_store.PlanBuilder` in
the same module; the edge takes or builds the plan before loading a version.
"""

from edge.backends.base import (
    Engine,
    EngineError,
    EngineSpec,
    EngineUnavailable,
    ModelFiles,
    ModelLoadError,
    engine_class,
    load_engine,
    register,
)

__all__ = [
    "Engine",
    "EngineError",
    "EngineSpec",
    "EngineUnavailable",
    "ModelFiles",
    "ModelLoadError",
    "engine_class",
    "load_engine",
    "register",
]
