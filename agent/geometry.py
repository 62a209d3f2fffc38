"""GNSS <-> CARLA metres and compass -> yaw for the agent (pure numpy/scipy).

Conventions (docs/leaderboard-agent-interface.md §4, §11; docs/released-agent.md §2): CARLA's world frame is
left-handed with x east, y south, z up; yaw is clockwise seen from above. Angle wrapping and the world <-> ego
transforms (x forward, y right) live in ``automot.geometry``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import fsolve

from automot.geometry import wrap_angle

EARTH_RADIUS_M = 6378137.0  # the leaderboard's spherical Mercator radius (docs/leaderboard-agent-interface.md §11)
DEFAULT_LAT_REF = 42.0  # OpenDRIVE geoReference default (docs/leaderboard-agent-interface.md §11)
DEFAULT_LON_REF = 2.0


def _mercator_scale(lat_ref: float) -> float:
    return math.cos(math.radians(lat_ref))


def _mx(lon: np.ndarray | float, scale: float) -> np.ndarray | float:
    return scale * EARTH_RADIUS_M * np.pi * np.asarray(lon, dtype=np.float64) / 180.0


def _my(lat: np.ndarray | float, scale: float) -> np.ndarray | float:
    return scale * EARTH_RADIUS_M * np.log(np.tan((90.0 + np.asarray(lat, dtype=np.float64)) * np.pi / 360.0))


def gps_to_local(
    lat: np.ndarray | float,
    lon: np.ndarray | float,
    lat_ref: float = DEFAULT_LAT_REF,
    lon_ref: float = DEFAULT_LON_REF,
) -> np.ndarray:
    """CARLA world (x, y) in metres from latitude/longitude in degrees; shape (..., 2)."""
    scale = _mercator_scale(lat_ref)
    x = _mx(lon, scale) - _mx(lon_ref, scale)
    y = _my(lat_ref, scale) - _my(lat, scale)  # CARLA's y points south, against the northing
    return np.stack(np.broadcast_arrays(x, y), axis=-1)


def local_to_gps(
    x: np.ndarray | float,
    y: np.ndarray | float,
    lat_ref: float = DEFAULT_LAT_REF,
    lon_ref: float = DEFAULT_LON_REF,
) -> np.ndarray:
    """(lat, lon) in degrees of CARLA world metres, as the leaderboard's ``_location_to_gps``; shape (..., 2)."""
    scale = _mercator_scale(lat_ref)
    mx = _mx(lon_ref, scale) + np.asarray(x, dtype=np.float64)
    my = _my(lat_ref, scale) - np.asarray(y, dtype=np.float64)
    lon = mx * 180.0 / (np.pi * EARTH_RADIUS_M * scale)
    lat = 360.0 * np.arctan(np.exp(my / (EARTH_RADIUS_M * scale))) / np.pi - 90.0
    return np.stack(np.broadcast_arrays(lat, lon), axis=-1)


def solve_georeference(world_xy: tuple[float, float], gps_latlon: tuple[float, float]) -> tuple[float, float]:
    """Solve (lat_ref, lon_ref) so that ``local_to_gps(world_xy)`` reproduces ``gps_latlon`` (the fsolve trick).

    Bench2Drive agents do this with the first world-plan and first GPS-plan point because Town12/13 use
    non-default georeferences the agent API does not expose. The guess starts at the GPS point itself: the
    reference lies within a few kilometres of any route point, so the solve converges in a few iterations.
    Raises ValueError when the solve does not reproduce the point to 1e-9 degrees (about 0.1 mm).
    """
    x, y = float(world_xy[0]), float(world_xy[1])
    lat, lon = float(gps_latlon[0]), float(gps_latlon[1])
    if not all(math.isfinite(v) for v in (x, y, lat, lon)):
        raise ValueError(f"non-finite georeference inputs: world {world_xy}, gps {gps_latlon}")

    def residual(ref: np.ndarray) -> np.ndarray:
        return local_to_gps(x, y, float(ref[0]), float(ref[1])) - np.array([lat, lon])

    solution, _, ier, msg = fsolve(residual, x0=np.array([lat, lon]), xtol=1e-13, full_output=True)
    err = float(np.max(np.abs(residual(solution))))
    if err > 1e-9:
        raise ValueError(f"georeference solve failed (ier={ier}, residual {err:.3g} deg): {msg}")
    return float(solution[0]), float(solution[1])


def compass_to_yaw(compass: float, fallback: float = 0.0) -> float:
    """CARLA yaw (radians, wrapped to (-pi, pi]) from the IMU compass (radians, 0 = north).

    The IMU reports NaN on some frames. The released agent replaces NaN by 0 (north); here NaN is replaced by
    ``fallback`` (callers pass the last valid compass, or 0 for the released behaviour), and by 0 when that is
    not finite either. ``wrap_angle`` uses the released ``normalize_angle`` arithmetic (automot_utils.py).
    """
    value = float(compass)
    if not math.isfinite(value):
        value = float(fallback) if math.isfinite(fallback) else 0.0
    return wrap_angle(value - math.pi / 2.0)
