"""Inputs shared by the scene-encoder tests (tiny released-layout model: 128x64 camera crop, 64x64 LiDAR grid)."""

from __future__ import annotations

import math

import numpy as np

from automot.agent.contract import Location, RoadOption, Rotation, Transform
from automot.agent.geometry import local_to_gps
from automot.runtime.types import DrivingObservation

GEOREF = (48.137, 11.575)

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


def creeping_plan() -> tuple[list, list]:
    """A straight 150 m route east: (GPS plan, world plan) as the leaderboard hands them to set_global_plan."""
    xy = [(0.0, 0.0), (50.0, 0.0), (100.0, 0.0), (150.0, 0.0)]
    world = [(Transform(Location(x, y, 0.0), Rotation()), RoadOption.LANEFOLLOW) for x, y in xy]
    latlon = np.asarray(local_to_gps(np.array(xy)[:, 0], np.array(xy)[:, 1], *GEOREF)).reshape(-1, 2)
    return [({"lat": a, "lon": o, "z": 0.0}, RoadOption.LANEFOLLOW) for a, o in latlon], world


def creeping_inputs(specs: list[dict], frame: int, drop: str | None = None, tick_camera: bool = False) -> dict:
    """Sensor data of a car creeping east (+x) at 1 m/s, with a LiDAR seeing a wall 6 m ahead.

    Cameras hold random noise, or with ``tick_camera`` the frame number in every pixel (so history frames can be
    identified); ``drop`` leaves one sensor id out.
    """
    rng = np.random.default_rng(frame)
    lat, lon = local_to_gps(0.05 * frame, 0.0, *GEOREF)
    data = {}
    for spec in specs:
        kind = spec["type"]
        if kind == "sensor.camera.rgb":
            shape = (spec["height"], spec["width"], 4)
            if tick_camera:
                payload = np.full(shape, frame % 256, np.uint8)
            else:
                payload = rng.integers(0, 256, shape, dtype=np.uint8)
        elif kind == "sensor.lidar.ray_cast":
            # Sensor frame (mounted at yaw -90): ego (x, y) = (sensor y, -sensor x); z = ego z - 2.5.
            ego_y = rng.uniform(-4.0, 4.0, 300)
            payload = np.stack([-ego_y, np.full(300, 6.0), rng.uniform(-2.0, 0.0, 300), np.ones(300)], 1)
            payload = payload.astype(np.float32)
        elif kind == "sensor.other.gnss":
            payload = np.array([lat, lon, 0.5])
        elif kind == "sensor.other.imu":
            payload = np.array([0.0, 0.0, 9.81, 0.0, 0.0, 0.0, math.pi / 2])
        else:
            payload = {"speed": 1.0}
        if spec["id"] != drop:
            data[spec["id"]] = (frame, payload)
    return data
