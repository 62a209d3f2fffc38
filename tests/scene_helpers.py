"""Inputs shared by the scene-encoder tests (tiny released-layout model: 128x64 camera crop, 64x64 LiDAR grid)."""

from __future__ import annotations

import numpy as np

from runtime.types import DrivingObservation

TP = np.array([[10.0, -1.5], [25.0, 2.0]], np.float32)


def scene_inputs(seed: int) -> dict[str, np.ndarray]:
    """Random camera (3, 64, 128) in 0..255 and a sparse one-channel LiDAR histogram (1, 64, 64)."""
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (3, 64, 128)).astype(np.float32)
    lidar = (rng.random((1, 64, 64)) < 0.2).astype(np.float32) * rng.random((1, 64, 64)).astype(np.float32)
    return {"rgb": rgb, "lidar": lidar}


def observation() -> DrivingObservation:
    rng = np.random.default_rng(7)
    return DrivingObservation([rng.integers(0, 256, (64, 128, 3), dtype=np.uint8) for _ in range(4)], TP, 5.0)
