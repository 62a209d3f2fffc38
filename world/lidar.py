"""Ray-cast LiDAR for the embedded world: ground plane plus vehicle boxes, CARLA's (N, 4) float32 layout.

The leaderboard's LiDAR spins at 10 Hz while the world ticks at 20 Hz, so each tick returns half a sweep; we do
the same (azimuth [0, 180) deg on even frames, [180, 360) on odd ones, sensor frame). Points are x forward,
y right, z up in the sensor frame (CARLA's left-handed convention) with intensity exp(-0.004 * range), CARLA's
default atmospheric attenuation. The channel count and azimuth step are lower than CARLA's (64 channels,
600k points/s) to keep a tick cheap; the vertical field of view (-30 .. +10 deg) and 85 m range match.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from automot.world.geometry import carla_matrix
from automot.world.render import Box


@dataclass(frozen=True)
class LidarConfig:
    """Beam pattern (degrees, metres)."""

    channels: int = 32
    upper_fov: float = 10.0
    lower_fov: float = -30.0
    range: float = 85.0
    azimuth_step: float = 1.0
    attenuation: float = 0.004


class LidarSensor:
    """One LiDAR mounted on the ego at a leaderboard sensor pose."""

    def __init__(self, mount: dict, config: LidarConfig = LidarConfig()) -> None:
        self.config = config
        self.mount = carla_matrix(*(float(mount.get(k, 0.0)) for k in ("x", "y", "z", "roll", "pitch", "yaw")))
        elevation = np.radians(np.linspace(config.lower_fov, config.upper_fov, config.channels))
        self._dirs = []
        for start in (0.0, 180.0):
            azimuth = np.radians(np.arange(start, start + 180.0, config.azimuth_step))
            el, az = np.meshgrid(elevation, azimuth, indexing="ij")
            dirs = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1).reshape(-1, 3)
            self._dirs.append(dirs)

    def measure(self, ego_pose: tuple[float, float, float], boxes: Sequence[Box], frame: int) -> np.ndarray:
        """(N, 4) float32 points [x, y, z, intensity] in the sensor frame for this tick's half sweep."""
        x, y, yaw = ego_pose
        sensor_to_world = carla_matrix(x, y, 0.0, 0.0, 0.0, math.degrees(yaw)) @ self.mount
        rot, origin = sensor_to_world[:3, :3], sensor_to_world[:3, 3]
        dirs_s = self._dirs[frame % 2]
        dirs_w = dirs_s @ rot.T
        t = np.full(len(dirs_s), np.inf)
        down = dirs_w[:, 2] < -1e-9
        t[down] = -origin[2] / dirs_w[down, 2]  # ground plane z = 0
        for box in boxes:
            if math.hypot(box.x - origin[0], box.y - origin[1]) > self.config.range + box.length:
                continue
            t = np.minimum(t, _ray_box(origin, dirs_w, box))
        hit = t <= self.config.range
        pts = dirs_s[hit] * t[hit, None]
        intensity = np.exp(-self.config.attenuation * t[hit])
        return np.hstack([pts, intensity[:, None]]).astype(np.float32)


def _ray_box(origin: np.ndarray, dirs: np.ndarray, box: Box) -> np.ndarray:
    """Entry distance of each ray into an oriented box standing on the ground (inf where missed)."""
    c, s = math.cos(box.yaw), math.sin(box.yaw)
    rel = origin - np.array([box.x, box.y, 0.0])
    o = np.array([c * rel[0] + s * rel[1], -s * rel[0] + c * rel[1], rel[2]])
    d = np.stack([c * dirs[:, 0] + s * dirs[:, 1], -s * dirs[:, 0] + c * dirs[:, 1], dirs[:, 2]], axis=1)
    lo = np.array([-box.length / 2, -box.width / 2, 0.0])
    hi = np.array([box.length / 2, box.width / 2, box.height])
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d
        t1, t2 = (lo - o) * inv, (hi - o) * inv
    t_near = np.nanmax(np.minimum(t1, t2), axis=1)
    t_far = np.nanmin(np.maximum(t1, t2), axis=1)
    inside = np.all((o > lo) & (o < hi))
    ok = (t_near <= t_far) & (t_near > 0.0) & ~inside
    return np.where(ok, t_near, np.inf)
