"""Dual-rate runtime: a slow path refreshes a KV snapshot, a fast path acts on it every tick.

Public API::

    from automot.runtime import build_runtime, RuntimeConfig, DrivingObservation, DrivingState, RuntimeOutput

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
    "DrivingState": "automot.runtime.types",
    "RuntimeOutput": "automot.runtime.types",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'automot.runtime' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
