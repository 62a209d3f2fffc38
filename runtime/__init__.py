"""Dual-rate runtime: a slow path refreshes a KV snapshot, a fast path acts on it every tick.

Public API::

    from runtime import build_runtime, RuntimeConfig, DrivingObservation, DrivingState, RuntimeOutput

    with build_runtime("tiny", mode="async", engine="onnxruntime") as rt:
        rt.submit(DrivingObservation(images, target_points, speed), sim_time, frame)
        out = rt.step(DrivingState(target_points, speed), sim_time, frame)   # RuntimeOutput
        rt.stats()

Names are resolved lazily (PEP 562) so ``import runtime.cli`` -- done by ``automot --help`` -- does not pull in
torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AutoMoTRuntime": "runtime.runtime",
    "build_runtime": "runtime.runtime",
    "RuntimeConfig": "runtime.config",
    "MODES": "runtime.config",
    "ENGINES": "runtime.config",
    "DoubleBufferedKV": "runtime.buffers",
    "SnapshotMeta": "runtime.buffers",
    "SnapshotView": "runtime.buffers",
    "MissingDependencyError": "runtime.engines",
    "create_engine": "runtime.engines",
    "DrivingObservation": "runtime.types",
    "DrivingState": "runtime.types",
    "RuntimeOutput": "runtime.types",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'runtime' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
