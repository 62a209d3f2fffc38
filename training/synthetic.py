"""Synthetic driving episodes in the project's dataset format, for tests and smoke runs without a simulator.

A kinematic ego follows a random speed and yaw-rate profile; every frame is a small picture of the road ahead
(a dark road band whose centre follows the ego's future path, lighter grass, a speed bar), so the image does
carry the information the targets need. Targets come from the same ``samples_from_track`` code the real
readers use.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from automot.geometry import world_to_ego
from automot.training.data.automot_format import DatasetWriter
from automot.training.data.schema import CameraInfo, DatasetMeta
from automot.training.data.trajectory import PoseTrack, samples_from_track

CAMERA = "CAM_FRONT"


def _render(local_future: np.ndarray, speed: float, width: int, height: int) -> np.ndarray:
    img = np.empty((height, width, 3), dtype=np.uint8)
    img[:] = (70, 140, 60)  # grass
    img[: height // 3] = (150, 190, 230)  # sky
    # np.interp needs increasing x: keep the future only while it moves forward (stops before a U-turn).
    forward = np.cumprod(np.r_[True, np.diff(local_future[:, 0]) > 1e-3]).astype(bool)
    local_future = local_future[forward]
    rows = np.arange(height // 3, height)
    # Row r looks at distance ~ proportional to 1 / (r - horizon): far rows near the horizon.
    dist = 2.0 + 40.0 * (height - rows) / (height - height // 3)
    lateral = np.interp(dist, np.r_[0.0, local_future[:, 0]], np.r_[0.0, local_future[:, 1]])
    half_width = 1.75 * width / (dist + 4.0)
    centre = width / 2 + lateral * width / (dist + 4.0)
    cols = np.arange(width)[None, :]
    road = np.abs(cols - centre[:, None]) < half_width[:, None]
    img[rows] = np.where(road[..., None], np.array([60, 60, 60], np.uint8), img[rows])
    bar = int(min(speed / 15.0, 1.0) * (width - 2))
    img[height - 2 :, 1 : 1 + bar] = (230, 40, 40)
    return img


def synthetic_track(rng: np.random.Generator, seconds: float = 9.0, rate: float = 10.0) -> PoseTrack:
    n = int(seconds * rate) + 1
    t = np.arange(n) / rate
    v0 = rng.uniform(0.0, 12.0)
    accel = rng.uniform(-1.5, 1.5)
    yaw_rate = rng.choice([0.0, 0.0, rng.uniform(-0.35, 0.35)])
    speed = np.clip(v0 + accel * t, 0.0, 15.0)
    yaw = rng.uniform(-np.pi, np.pi) + yaw_rate * t * (speed > 0.2)
    xy = np.zeros((n, 2))
    for i in range(1, n):
        step = speed[i - 1] / rate
        xy[i] = xy[i - 1] + step * np.array([np.cos(yaw[i - 1]), np.sin(yaw[i - 1])])
    # Target points: 20 m and 40 m ahead along the final heading from the last pose (a plausible route).
    end, heading = xy[-1], np.array([np.cos(yaw[-1]), np.sin(yaw[-1])])
    tps = np.stack([end + 20.0 * heading, end + 40.0 * heading])
    return PoseTrack(
        frames=np.arange(n), times=t, xy=xy, yaw=yaw, speed=speed, target_points_world=np.repeat(tps[None], n, axis=0)
    )


def write_synthetic_dataset(
    root: str | Path,
    episodes: int = 2,
    seed: int = 0,
    width: int = 64,
    height: int = 32,
    every: int = 5,
    image_format: str = "png",
    qa: bool = True,
) -> Path:
    """Write ``episodes`` synthetic episodes (10 Hz, a sample every ``every`` frames) and return the root."""
    from automot.training.data.schema import QAPair

    rng = np.random.default_rng(seed)
    cams = {CAMERA: CameraInfo(width, height, 90.0, CameraInfo.pinhole(width, height, 90.0))}
    meta = DatasetMeta(
        rig="synthetic",
        cameras=cams,
        frame_rate_hz=10.0,
        image_format=image_format,
        source="automot.training.synthetic",
    )
    writer = DatasetWriter(root, meta, overwrite=True)
    for e in range(episodes):
        track = synthetic_track(rng)
        records = samples_from_track(track, every=every)
        with writer.episode(f"episode_{e:03d}") as ep:
            needed = sorted({f for r in records for f in [*r.history, r.frame]})
            for i in needed:
                future = world_to_ego(track.xy[i:], track.xy[i], float(track.yaw[i]))
                ep.add_frame(i, {CAMERA: _render(future, float(track.speed[i]), width, height)})
            for r in records:
                if qa:
                    r.qa = [QAPair("How fast am I driving?", f"About {r.speed:.0f} m/s.")]
                ep.add_sample(r)
    return Path(root)
