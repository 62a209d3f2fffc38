"""highway-env <-> CARLA world coordinates, GNSS Mercator conversion, and the leaderboard global plan.

Coordinate mapping (verified in highway_env/vehicle/kinematics.py and road/graphics.py, v1.12):
  highway-env integrates ``position += v * [cos(heading), sin(heading)] * dt`` and draws +y downwards on screen,
  so +heading turns +x towards +y (clockwise seen from above). CARLA (Unreal, left-handed, z up) has x forward,
  y right and yaw turning +x towards +y as well. The mapping is therefore the identity on (x, y) and
  ``yaw_deg = degrees(heading)``; z = 0 is the road surface. highway-env's +y is south (CARLA y is the opposite
  of northing, see the Mercator formulas below), so its "south"/"north" node names agree with the GNSS output.

GNSS (leaderboard ``_location_to_gps`` / agents' ``gps_to_location``), spherical Mercator, R = 6378137 m,
scale = cos(lat_ref): mx = mx(lon_ref) + x, my = my(lat_ref) - y.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

EARTH_RADIUS = 6378137.0


def hw_to_carla(x: float, y: float, heading: float) -> tuple[float, float, float]:
    """highway-env (x, y, heading rad) -> CARLA (x, y, yaw deg). Identity on position, see module docstring."""
    return float(x), float(y), math.degrees(heading)


def carla_to_hw(x: float, y: float, yaw_deg: float) -> tuple[float, float, float]:
    """CARLA (x, y, yaw deg) -> highway-env (x, y, heading rad)."""
    return float(x), float(y), math.radians(yaw_deg)


def _scale(lat_ref: float) -> float:
    return math.cos(math.radians(lat_ref))


def _mx(lon: float, scale: float) -> float:
    return scale * EARTH_RADIUS * math.pi * lon / 180.0


def _my(lat: float, scale: float) -> float:
    return scale * EARTH_RADIUS * math.log(math.tan((90.0 + lat) * math.pi / 360.0))


def location_to_gps(x: float, y: float, z: float, lat_ref: float = 42.0, lon_ref: float = 2.0) -> dict[str, float]:
    """World location -> {'lat', 'lon', 'z'} exactly like the leaderboard's ``_location_to_gps``."""
    scale = _scale(lat_ref)
    mx = _mx(lon_ref, scale) + x
    my = _my(lat_ref, scale) - y
    lon = mx * 180.0 / (math.pi * EARTH_RADIUS * scale)
    lat = 360.0 * math.atan(math.exp(my / (EARTH_RADIUS * scale))) / math.pi - 90.0
    return {"lat": lat, "lon": lon, "z": float(z)}


def gps_to_location(lat: float, lon: float, lat_ref: float = 42.0, lon_ref: float = 2.0) -> tuple[float, float]:
    """GNSS (lat, lon) -> world (x, y), the agents' inverse of ``location_to_gps``."""
    scale = _scale(lat_ref)
    x = _mx(lon, scale) - _mx(lon_ref, scale)
    y = _my(lat_ref, scale) - _my(lat, scale)
    return x, y


def road_option(name: str) -> Any:
    """RoadOption member of the agent contract for a name such as 'LANEFOLLOW'."""
    from automot.agent.contract import RoadOption

    return RoadOption[name]


def make_transform(x: float, y: float, z: float = 0.0, yaw_deg: float = 0.0, pitch: float = 0.0, roll: float = 0.0):
    """Contract ``Transform`` (carla.Transform look-alike) from CARLA world values."""
    from automot.agent.contract import Location, Rotation, Transform

    return Transform(Location(x=float(x), y=float(y), z=float(z)), Rotation(pitch=pitch, yaw=float(yaw_deg), roll=roll))


def build_global_plan(
    points: np.ndarray,
    options: Sequence[str],
    lat_ref: float,
    lon_ref: float,
    sample_factor: float | None = None,
) -> tuple[list[tuple[dict[str, float], Any]], list[tuple[Any, Any]]]:
    """(gps_plan, world_plan) for ``set_global_plan`` from a dense route polyline (N, 2) in world coordinates.

    Yaw of each point is the direction to the next one. With ``sample_factor`` the plan is downsampled by the
    contract's ``downsample_route`` (the leaderboard's rule). The evaluator itself hands agents the dense plan and
    lets ``AutonomousAgent.set_global_plan`` downsample it (50 m in Bench2Drive), so the runner passes
    ``sample_factor=None``.
    """
    from automot.agent.contract import downsample_route

    pts = np.asarray(points, dtype=np.float64)
    deltas = np.diff(pts[:, :2], axis=0)
    yaws = np.degrees(np.arctan2(deltas[:, 1], deltas[:, 0]))
    yaws = np.append(yaws, yaws[-1] if len(yaws) else 0.0)
    world_plan = [(make_transform(p[0], p[1], 0.0, yaw), road_option(o)) for p, yaw, o in zip(pts, yaws, options)]
    gps_plan = [(location_to_gps(p[0], p[1], 0.0, lat_ref, lon_ref), opt) for p, (_, opt) in zip(pts, world_plan)]
    if sample_factor is not None:
        ids = downsample_route(world_plan, sample_factor)
        world_plan = [world_plan[i] for i in ids]
        gps_plan = [gps_plan[i] for i in ids]
    return gps_plan, world_plan
