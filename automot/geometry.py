"""The project's one set of planar angle and frame helpers (numpy only; model, agent, world and training use it).

Angles are radians. ``wrap_angle`` wraps to the half-open interval (-pi, pi]: +pi stays +pi and -pi becomes
+pi. It uses the released agent's arithmetic (``automot_utils.normalize_angle``: x mod 2 pi, minus 2 pi above
pi), so the released profile's compass and UKF values are bit-identical to the original code. The one call site
that needs the other interval for parity (the released lateral PID's heading error) uses
``wrap_angle_left_closed``, which wraps to [-pi, pi).

World frame: CARLA's (x east, y south, z up, left-handed); a yaw turns +x towards +y (clockwise seen from
above), and highway-env's (x, y, heading) is the same frame. Ego frame: origin at the ego, x forward, y to the
right, so a point on the right has positive y. With R(yaw) = [[cos, -sin], [sin, cos]] (the ego axes in world
coordinates, as columns): p_ego = R(yaw)^T (p_world - ego_xy) and p_world = R(yaw) p_ego + ego_xy.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["wrap_angle", "wrap_angle_left_closed", "rotation_2d", "world_to_ego", "ego_to_world", "heading_vector"]

_TWO_PI = 2.0 * math.pi


def wrap_angle(angle: float | np.ndarray) -> float | np.ndarray:
    """Wrap radians to (-pi, pi]; a scalar gives a float, an array an array of the same shape.

    Released arithmetic (x mod 2 pi, minus 2 pi above pi); NaN stays NaN. For arrays ``np.mod`` follows the same
    rule as Python's float ``%`` (result takes the divisor's sign), so elements equal the scalar results.
    """
    if np.ndim(angle) == 0:
        value = float(angle) % _TWO_PI
        return value - _TWO_PI if value > math.pi else value
    values = np.mod(np.asarray(angle, dtype=np.float64), _TWO_PI)
    return np.where(values > math.pi, values - _TWO_PI, values)


def wrap_angle_left_closed(angle: float) -> float:
    """Wrap radians to [-pi, pi): +pi becomes -pi.

    Only for the released LateralPIDController's heading error (nav_planner.py: x mod 2 pi, minus 2 pi at or
    above pi), which must stay bit-identical to the original steering; everything else uses ``wrap_angle``.
    """
    value = float(angle) % _TWO_PI
    return value - _TWO_PI if value >= math.pi else value


def rotation_2d(yaw: float) -> np.ndarray:
    """R(yaw) = [[cos, -sin], [sin, cos]]: the ego axes expressed in the world frame (as columns)."""
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s], [s, c]], dtype=np.float64)


def world_to_ego(points: np.ndarray, ego_xy: np.ndarray, yaw: float) -> np.ndarray:
    """World points (N, 2) -> ego frame (N, 2), x forward, y right: p_ego = R(yaw)^T (p - ego_xy)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return (pts - np.asarray(ego_xy, dtype=np.float64).reshape(1, 2)) @ rotation_2d(float(yaw))


def ego_to_world(points: np.ndarray, ego_xy: np.ndarray, yaw: float) -> np.ndarray:
    """Ego-frame points (N, 2) -> world (N, 2): p = R(yaw) p_ego + ego_xy (inverse of ``world_to_ego``)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return pts @ rotation_2d(float(yaw)).T + np.asarray(ego_xy, dtype=np.float64).reshape(1, 2)


def heading_vector(yaw: float) -> np.ndarray:
    """Unit forward vector (2,) of a heading ``yaw`` in the world frame."""
    return np.array([math.cos(yaw), math.sin(yaw)], dtype=np.float64)
