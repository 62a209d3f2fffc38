"""Static render geometry of a highway-env road network: lane surface quads and lane-marking quads (z = 0).

Each lane becomes a strip of quads between its left and right edges; markings follow highway-env's line types
(side 0 is the lane's left edge at lateral -width/2, side 1 its right edge): STRIPED -> 3 m dashes every 9 m,
CONTINUOUS / CONTINUOUS_LINE -> a solid line, NONE -> nothing. Lines are 0.15 m wide, like CARLA's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from highway_env.road.lane import LineType, StraightLane

STRAIGHT_STEP = 10.0  # m; a straight lane needs few quads (near-plane clipping keeps them exact)
CURVED_STEP = 2.0
DASH_LENGTH, DASH_PERIOD = 3.0, 9.0
LINE_WIDTH = 0.15


@dataclass(frozen=True)
class QuadSet:
    """(M, 4, 3) world-frame convex quads with their 2-D centres and bounding radii (for distance culling)."""

    quads: np.ndarray
    centers: np.ndarray
    radii: np.ndarray

    @staticmethod
    def from_list(quads: list[np.ndarray]) -> QuadSet:
        arr = np.array(quads, dtype=np.float64).reshape(-1, 4, 3)
        centers = arr[:, :, :2].mean(axis=1)
        radii = np.linalg.norm(arr[:, :, :2] - centers[:, None, :], axis=2).max(axis=1) if len(arr) else np.zeros(0)
        return QuadSet(arr, centers, radii)

    def near(self, xy: np.ndarray, distance: float) -> np.ndarray:
        """Quads whose bounding circle comes within ``distance`` of ``xy``."""
        if not len(self.quads):
            return self.quads
        d = np.linalg.norm(self.centers - xy[None, :2], axis=1) - self.radii
        return self.quads[d < distance]


@dataclass(frozen=True)
class StaticScene:
    """Everything static the camera and LiDAR need to draw."""

    road: QuadSet
    markings: QuadSet


def build_static_scene(network) -> StaticScene:
    """Sample every lane of a highway-env RoadNetwork into surface and marking quads."""
    road, marks = [], []
    for lane in network.lanes_list():
        step = STRAIGHT_STEP if type(lane) is StraightLane else CURVED_STEP  # SineLane subclasses it
        s = np.append(np.arange(0.0, lane.length, step), lane.length)
        road.extend(_strip(lane, s, -lane.width_at(0) / 2, lane.width_at(0) / 2))
        for side in (0, 1):
            kind = lane.line_types[side] if lane.line_types else LineType.NONE
            lat = (side - 0.5) * lane.width_at(0)
            if kind == LineType.STRIPED:
                for s0 in np.arange(0.0, lane.length - 0.5, DASH_PERIOD):
                    ds = np.linspace(s0, min(s0 + DASH_LENGTH, lane.length), 3 if step == CURVED_STEP else 2)
                    marks.extend(_strip(lane, ds, lat - LINE_WIDTH / 2, lat + LINE_WIDTH / 2, z=0.01))
            elif kind in (LineType.CONTINUOUS, LineType.CONTINUOUS_LINE):
                marks.extend(_strip(lane, s, lat - LINE_WIDTH / 2, lat + LINE_WIDTH / 2, z=0.01))
    return StaticScene(road=QuadSet.from_list(road), markings=QuadSet.from_list(marks))


def _strip(lane, s: np.ndarray, lat_left: float, lat_right: float, z: float = 0.0) -> list[np.ndarray]:
    left = np.array([lane.position(float(si), lat_left) for si in s])
    right = np.array([lane.position(float(si), lat_right) for si in s])
    zs = np.full((len(s), 1), z)
    left, right = np.hstack([left, zs]), np.hstack([right, zs])
    return [np.stack([left[i], left[i + 1], right[i + 1], right[i]]) for i in range(len(s) - 1)]
