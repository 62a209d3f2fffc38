"""Dual-rate runtime: a slow path refreshes a KV snapshot, a fast path acts on it every tick.

Public API::

    from automot.runtime import build_runtime, RuntimeConfig, DrivingObservation, DrivingState, RuntimeOutput

    with build_runtime("tiny", mode="async", engine="onnxruntime") as rt:
        rt.submit(DrivingObservation(images, target_points, speed), sim_time, frame)
        out = rt.step(DrivingState(target_points, speed), sim_time, frame)   # RuntimeOutput
        rt.stats()

The project's own code imports the modules directly (``from automot.runtime.runtime import AutoMoTRuntime``); the
names below are a convenience for scripts and tests. They are resolved lazily (PEP 562) so that importing a
torch-free submodule (``automot.runtime.config``, read by the agent config loader) does not pull in torch; the
``TYPE_CHECKING`` block gives editors and type checkers the same names statically.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from automot.runtime.buffers import DoubleBufferedKV, SnapshotMeta, SnapshotView
    from automot.runtime.config import ENGINES, MODES, RuntimeConfig
    from automot.runtime.engines import MissingDependencyError, create_engine
    from automot.runtime.runtime import AutoMoTRuntime, build_runtime
    from automot.runtime.types import DrivingObservation, DrivingRuntime, DrivingState, RuntimeOutput

_EXPORTS = {
    "AutoMoTRuntime": "automot.runtime.runtime",
    "build_runtime": "automot.runtime.runtime",
    "RuntimeConfig": "automot.runtime.config",
    "MODES": "automot.runtime.config",
    "ENGINES": "automot.runtime.config",
    "DoubleBufferedKV": "automot.runtime.buffers",
    "SnapshotMeta": "automot.runtime.buffers",
    "SnapshotView": "automot.runtime.buffers",
    "MissingDependencyError": "automot.runtime.engines",
    "create_engine": "automot.runtime.engines",
    "DrivingObservation": "automot.runtime.types",
    "DrivingRuntime": "automot.runtime.types",
    "DrivingState": "automot.runtime.types",
    "RuntimeOutput": "automot.runtime.types",
}

__all__ = [
    "ENGINES",
    "MODES",
    "AutoMoTRuntime",
    "DoubleBufferedKV",
    "DrivingObservation",
    "DrivingRuntime",
    "DrivingState",
    "MissingDependencyError",
    "RuntimeConfig",
    "RuntimeOutput",
    "SnapshotMeta",
    "SnapshotView",
    "build_runtime",
    "create_engine",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'automot.runtime' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
