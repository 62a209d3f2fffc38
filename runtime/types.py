"""Plain data passed between the agent and the runtime (no torch, no CARLA).

Frames are ego-frame metres with CARLA's convention: x forward, y to the right.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class DrivingObservation:
    """What the slow path (understanding expert) consumes: camera history plus prompt values.

    images: RGB uint8 frames (H, W, 3), oldest first; the runtime resizes them for the VLM.
    target_points: (2, 2) current and next target point in the ego frame.
    speed: ego speed in m/s.
    """

    images: list[np.ndarray]
    target_points: np.ndarray
    speed: float


@dataclass(frozen=True)
class DrivingState:
    """What the fast path (action expert) consumes every tick.

    scene: optional (N, D) precomputed scene-token features (e.g. from the BEV encoder); None when the model has
    no scene tokens or when ``scene_inputs`` is given instead.
    scene_inputs: optional raw per-tick inputs of the scene encoder attached to the model, which the runtime then
    runs on its fast path: {"rgb": (3, H, W) RGB 0..255, "lidar": (C, H', W') histogram} (runtime/scene.py).
    ``scene`` wins when both are given.
    """

    target_points: np.ndarray
    speed: float
    scene: np.ndarray | None = None
    scene_inputs: dict[str, np.ndarray] | None = None


@dataclass(frozen=True)
class RuntimeOutput:
    """One fast-path result, with everything needed to judge how fresh and how fast it was."""

    path: np.ndarray  # (20, 2) steering path, ego frame
    waypoints: np.ndarray  # (6, 2) speed waypoints at 0.5 s spacing, ego frame
    decision_text: str
    reasoning_text: str | None
    snapshot_version: int  # -1 when no snapshot existed
    snapshot_frame: int  # frame the snapshot was computed from (-1 if none)
    snapshot_sim_time: float  # sim time of that frame (nan if none)
    age_ticks: int  # frame - snapshot_frame
    age_s: float  # sim_time - snapshot_sim_time
    fast_step_ms: float  # wall time of the fast step
    safe_stop: bool = False  # True: the caller must brake; path/waypoints are a standstill
    safe_stop_reason: str | None = None
    # Set when a refresh overran its wall-clock budget (RuntimeConfig.refresh_timeout_s) and is still running: this
    # output then comes from the previous snapshot (within the age limits) or is a safe stop, and this says which
    # refresh is late and by how much.
    refresh_overrun: str | None = None
    # Wall time of the slow-path refresh that produced the snapshot this tick used (nan: none / not measured).
    snapshot_refresh_ms: float = float("nan")
    extras: dict = field(default_factory=dict)

    @staticmethod
    def stop(reason: str, frame: int = -1, sim_time: float = float("nan")) -> RuntimeOutput:
        """A standstill output flagged as a safe stop."""
        return RuntimeOutput(
            path=np.zeros((20, 2), np.float32),
            waypoints=np.zeros((6, 2), np.float32),
            decision_text="stop",
            reasoning_text=None,
            snapshot_version=-1,
            snapshot_frame=-1,
            snapshot_sim_time=float("nan"),
            age_ticks=-1,
            age_s=float("nan"),
            fast_step_ms=0.0,
            safe_stop=True,
            safe_stop_reason=reason,
            extras={"frame": frame, "sim_time": sim_time},
        )


class DrivingRuntime(Protocol):
    """What the agent calls on its runtime, once per tick: ``submit`` then ``step`` (runtime/runtime.py
    ``AutoMoTRuntime`` is the real one; tests and worlds may inject any object with these methods).

    Optional, read with ``getattr`` by the agent: ``needs_scene_inputs`` (bool) and ``scene_config`` (the attached
    BEV encoder's config) when the model's scene tokens come from raw camera/LiDAR inputs.
    """

    def submit(self, observation: DrivingObservation, sim_time: float, frame: int) -> None:
        """Hand the newest frames to the slow path; the runtime's mode decides whether and when it refreshes."""
        ...

    def step(self, state: DrivingState, sim_time: float, frame: int) -> RuntimeOutput:
        """The fast path on the newest published snapshot (or a flagged safe stop)."""
        ...

    def stats(self) -> dict[str, Any]: ...

    def close(self) -> None: ...
