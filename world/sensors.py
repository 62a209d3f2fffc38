"""Leaderboard ``input_data`` from the embedded world: ``{sensor_id: (frame, payload)}`` for ``sensors()``.

Payloads follow docs/leaderboard-agent-interface.md §4: cameras BGRA uint8 (H, W, 4); LiDAR float32 (N, 4); GNSS
float64 [lat, lon, alt]; IMU float64 [acc x, y, z, gyro x, y, z, compass]; speedometer {'speed': m/s}. Noise matches the
leaderboard's sensor wrapper (GNSS stddev 5e-6 deg on lat/lon/alt, IMU accelerometer 0.001/0.001/0.015 and gyro
0.001) and is seeded, so a run is reproducible.

IMU conventions (CARLA): accelerations in the sensor frame (x fwd, y right, z up) including gravity (+9.81 on z at
rest); gyro z = d(yaw)/dt (positive turning right); compass = sensor yaw + pi/2 wrapped to [0, 2 pi), 0 = north,
which agents undo with "compass - pi/2".
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from automot.errors import ConfigError
from automot.world.geo import location_to_gps
from automot.world.geometry import carla_matrix
from automot.world.lidar import LidarSensor
from automot.world.render import Box, CameraRenderer, CameraSpec
from automot.world.scene import StaticScene, build_static_scene
from automot.world.sim import EmbeddedWorld

CAMERA, LIDAR, RADAR = "sensor.camera.rgb", "sensor.lidar.ray_cast", "sensor.other.radar"
GNSS, IMU, SPEEDOMETER, OPENDRIVE = (
    "sensor.other.gnss",
    "sensor.other.imu",
    "sensor.speedometer",
    "sensor.opendrive_map",
)
SUPPORTED = (CAMERA, LIDAR, GNSS, IMU, SPEEDOMETER)
# Leaderboard icons stored in results.json 'sensors' (leaderboard_evaluator.sensors_to_icons).
SENSOR_ICONS = {
    CAMERA: "carla_camera",
    LIDAR: "carla_lidar",
    RADAR: "carla_radar",
    GNSS: "carla_gnss",
    IMU: "carla_imu",
    OPENDRIVE: "carla_opendrive_map",
    SPEEDOMETER: "carla_speedometer",
}
SENSOR_LIMITS = {
    "SENSORS": {CAMERA: 8, LIDAR: 2, RADAR: 4, GNSS: 1, IMU: 1, OPENDRIVE: 0, SPEEDOMETER: 1},
    "MAP": {CAMERA: 8, LIDAR: 2, RADAR: 4, GNSS: 1, IMU: 1, OPENDRIVE: 1, SPEEDOMETER: 1},
}
MAX_RADIUS, MAX_RADIUS_SAVE_PATH = 3.0, 100.0
GNSS_STD_DEG = 5e-6
IMU_ACC_STD = (0.001, 0.001, 0.015)
IMU_GYRO_STD = 0.001
GRAVITY = 9.81
EGO_COLOR = (70, 58, 52)  # BGR, dark blue-grey paint
OBSTACLE_COLOR = (40, 120, 230)
PALETTE = [(235, 235, 235), (170, 170, 175), (40, 40, 40), (40, 40, 185), (150, 80, 30), (60, 60, 90), (50, 140, 200)]


class SensorConfigurationInvalid(ConfigError):
    """The agent's ``sensors()`` list would be rejected (or cannot be simulated by the embedded world)."""


def validate_sensor_configuration(sensors: Sequence[dict], track: str = "SENSORS") -> None:
    """The leaderboard's checks: ids present and unique, allowed types and counts, mount radius <= 3 m
    (100 m when SAVE_PATH is set, as in Bench2Drive)."""
    limits = SENSOR_LIMITS["MAP" if str(track).upper().startswith("MAP") else "SENSORS"]
    if any(not isinstance(s, dict) or "type" not in s for s in sensors):
        raise SensorConfigurationInvalid("every sensor must be a dict with a 'type'")
    ids = [s.get("id") for s in sensors]
    if any(not i for i in ids):
        raise SensorConfigurationInvalid("every sensor needs a non-empty 'id'")
    dup = [i for i, n in Counter(ids).items() if n > 1]
    if dup:
        raise SensorConfigurationInvalid(f"duplicate sensor ids: {dup}")
    counts = Counter(s.get("type") for s in sensors)
    for kind, n in counts.items():
        if kind not in limits:
            raise SensorConfigurationInvalid(f"unknown sensor type {kind!r}; leaderboard types: {sorted(limits)}")
        if n > limits[kind]:
            raise SensorConfigurationInvalid(f"too many {kind} sensors: {n} > {limits[kind]} on track {track}")
    max_radius = MAX_RADIUS_SAVE_PATH if os.environ.get("SAVE_PATH") else MAX_RADIUS
    for s in sensors:
        if s["type"] in (SPEEDOMETER, OPENDRIVE):
            continue
        radius = math.sqrt(sum(float(s.get(k, 0.0)) ** 2 for k in ("x", "y", "z")))
        if radius > max_radius:
            raise SensorConfigurationInvalid(f"sensor {s['id']!r} is {radius:.2f} m from the ego (max {max_radius})")
    for s in sensors:
        if s["type"] not in SUPPORTED:
            raise SensorConfigurationInvalid(
                f"sensor {s['id']!r} of type {s['type']!r} is not simulated by the embedded world "
                f"(supported: {', '.join(SUPPORTED)})"
            )


class SensorSuite:
    """Builds ``input_data`` for a validated sensor list every tick."""

    def __init__(
        self, sensors: Sequence[dict], world: EmbeddedWorld, seed: int = 0, noise: bool = True, render_ego: bool = True
    ) -> None:
        validate_sensor_configuration(sensors)
        self.sensors = [dict(s) for s in sensors]
        self.world = world
        self.noise = noise
        self.render_ego = render_ego
        self.rng = np.random.default_rng(seed)
        self._scene: StaticScene | None = None
        self._cameras: dict[str, CameraRenderer] = {}
        self._lidars: dict[str, LidarSensor] = {}
        for s in self.sensors:
            if s["type"] == CAMERA:
                self._cameras[s["id"]] = CameraRenderer(CameraSpec.from_sensor(s), self.scene)
            elif s["type"] == LIDAR:
                self._lidars[s["id"]] = LidarSensor(s)

    @property
    def scene(self) -> StaticScene:
        """Static road geometry, built on first use (cameras only)."""
        if self._scene is None:
            self._scene = build_static_scene(self.world.network)
        return self._scene

    def icons(self) -> list[str]:
        """Leaderboard sensor icons for results.json."""
        return [SENSOR_ICONS[s["type"]] for s in self.sensors]

    def read(self) -> dict[str, tuple[int, Any]]:
        """One tick of data for every sensor, stamped with the world's frame number."""
        frame = self.world.frame
        ego = self.world.ego_state()
        pose = (ego.x, ego.y, ego.yaw)
        boxes = self._boxes(ego) if (self._cameras or self._lidars) else []
        data: dict[str, tuple[int, Any]] = {}
        for s in self.sensors:
            sid, kind = s["id"], s["type"]
            if kind == CAMERA:
                payload: Any = self._cameras[sid].render(pose, boxes)
            elif kind == LIDAR:
                payload = self._lidars[sid].measure(pose, boxes, frame)
            elif kind == GNSS:
                payload = self._gnss(s, ego)
            elif kind == IMU:
                payload = self._imu(s, ego)
            else:  # SPEEDOMETER (validated above)
                payload = {"speed": float(ego.vx * math.cos(ego.yaw) + ego.vy * math.sin(ego.yaw))}
            data[sid] = (frame, payload)
        return data

    def _boxes(self, ego) -> list[Box]:
        boxes = []
        for actor in self.world.actors():
            if actor.is_vehicle:
                color = PALETTE[actor.id % len(PALETTE)]
                boxes.append(Box(actor.x, actor.y, actor.yaw, actor.length, actor.width, actor.height, color))
            else:
                boxes.append(
                    Box(actor.x, actor.y, actor.yaw, actor.length, actor.width, actor.height, OBSTACLE_COLOR, False)
                )
        if self.render_ego:
            p = self.world.params
            boxes.append(Box(ego.x, ego.y, ego.yaw, p.length, p.width, p.height, EGO_COLOR))
        return boxes

    def _sensor_pose(self, s: dict, ego) -> np.ndarray:
        mount = carla_matrix(*(float(s.get(k, 0.0)) for k in ("x", "y", "z", "roll", "pitch", "yaw")))
        return carla_matrix(ego.x, ego.y, 0.0, 0.0, 0.0, math.degrees(ego.yaw)) @ mount

    def _gnss(self, s: dict, ego) -> np.ndarray:
        # The wrapper ignores a GNSS rotation; only the mount offset moves the antenna.
        pos = self._sensor_pose({k: s.get(k, 0.0) for k in ("x", "y", "z")}, ego)[:3, 3]
        gps = location_to_gps(pos[0], pos[1], pos[2], self.world.spec.lat_ref, self.world.spec.lon_ref)
        out = np.array([gps["lat"], gps["lon"], gps["z"]], dtype=np.float64)
        if self.noise:
            out += self.rng.normal(0.0, GNSS_STD_DEG, 3)
        return out

    def _imu(self, s: dict, ego) -> np.ndarray:
        pose = self._sensor_pose(s, ego)
        rot = pose[:3, :3]  # sensor -> world
        acc = rot.T @ np.array([ego.ax, ego.ay, GRAVITY])
        gyro = rot.T @ np.array([0.0, 0.0, ego.yaw_rate])
        sensor_yaw = math.atan2(rot[1, 0], rot[0, 0])
        compass = (sensor_yaw + math.pi / 2) % (2 * math.pi)
        if self.noise:
            acc = acc + self.rng.normal(0.0, IMU_ACC_STD)
            gyro = gyro + self.rng.normal(0.0, IMU_GYRO_STD, 3)
        return np.array([*acc, *gyro, compass], dtype=np.float64)
