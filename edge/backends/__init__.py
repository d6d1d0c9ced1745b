"""Inference engines as plugins: one module per engine, each registering an `Engine` subclass.

`load_engine(model_dir, EngineSpec("onnxruntime", "int8"))` imports `edge.backends.onnxruntime`
on demand, so adding an engine means adding one module here; tests may register their own.
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
