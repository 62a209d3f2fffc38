"""CARLA transform matrices and oriented-box footprints for the embedded world (CARLA conventions, numpy only).

Frames follow CARLA/Unreal: x forward, y right, z up (left-handed); yaw rotates x towards y, pitch lifts the nose,
angles in degrees at the API boundary and radians inside. Angle wrapping and the planar world <-> ego transforms
live in ``automot.geometry``.
"""

from __future__ import annotations

import math

import numpy as np


def carla_matrix(x: float, y: float, z: float, roll: float, pitch: float, yaw: float) -> np.ndarray:
    """4x4 local-to-parent matrix of a CARLA transform (angles in degrees), same layout as carla.Transform.get_matrix."""
    cr, sr = math.cos(math.radians(roll)), math.sin(math.radians(roll))
    cp, sp = math.cos(math.radians(pitch)), math.sin(math.radians(pitch))
    cy, sy = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
    return np.array(
        [
            [cp * cy, cy * sp * sr - sy * cr, -cy * sp * cr - sy * sr, x],
            [cp * sy, sy * sp * sr + cy * cr, -sy * sp * cr + cy * sr, y],
            [sp, -cp * sr, cp * cr, z],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )


def rigid_inverse(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a 4x4 rotation+translation matrix."""
    inv = np.eye(4)
    rot = matrix[:3, :3]
    inv[:3, :3] = rot.T
    inv[:3, 3] = -rot.T @ matrix[:3, 3]
    return inv


def obb_corners(x: float, y: float, yaw: float, length: float, width: float) -> np.ndarray:
    """(4, 2) footprint corners of an oriented box (yaw in radians), counter-clockwise in the x-right/y-down view."""
    c, s = math.cos(yaw), math.sin(yaw)
    hl, hw = length / 2, width / 2
    local = np.array([[hl, hw], [hl, -hw], [-hl, -hw], [-hl, hw]])
    return local @ np.array([[c, s], [-s, c]]) + np.array([x, y])


def obb_overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Separating-axis test for two convex (4, 2) footprints; touching edges count as no overlap."""
    for poly in (a, b):
        edges = np.roll(poly, -1, axis=0) - poly
        for ex, ey in edges:
            axis = np.array([-ey, ex])
            pa, pb = a @ axis, b @ axis
            if pa.max() <= pb.min() or pb.max() <= pa.min():
                return False
    return True
