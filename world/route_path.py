"""The ego route as a dense centreline polyline with arc length, heading and RoadOption per point.

Built from highway-env lanes: each leg's lane centre is sampled every ``step`` metres; a lane change blends the
lateral offset between the two lanes with a smoothstep over ``change_length`` metres. All coordinates are
highway-env's, which are also CARLA world coordinates (see ``world/geo.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from automot.geometry import wrap_angle
from automot.world.routes import RouteLeg

LANE_CHANGE_OPTIONS = ("CHANGELANELEFT", "CHANGELANERIGHT")


class RoutePath:
    """Polyline route: ``points`` (N, 2), cumulative arc length ``s`` (N,), ``options`` (N,) RoadOption names."""

    def __init__(self, points: np.ndarray, options: Sequence[str], lane_width: float = 4.0) -> None:
        pts = np.asarray(points, dtype=np.float64)
        keep = np.concatenate([[True], np.linalg.norm(np.diff(pts, axis=0), axis=1) > 1e-6])
        self.points = pts[keep]
        self.options = [o for o, k in zip(options, keep) if k]
        if len(self.points) < 2:
            raise ValueError("a route needs at least two distinct points")
        seg = np.diff(self.points, axis=0)
        self._seg_len = np.linalg.norm(seg, axis=1)
        self.s = np.concatenate([[0.0], np.cumsum(self._seg_len)])
        self._seg_dir = seg / self._seg_len[:, None]
        self._seg_heading = np.arctan2(seg[:, 1], seg[:, 0])
        self.lane_width = lane_width

    @property
    def length(self) -> float:
        """Total arc length in metres."""
        return float(self.s[-1])

    def position_at(self, s: float) -> np.ndarray:
        """(x, y) at arc length ``s`` (clamped to the route)."""
        s = float(np.clip(s, 0.0, self.length))
        i = int(np.clip(np.searchsorted(self.s, s, side="right") - 1, 0, len(self._seg_len) - 1))
        return self.points[i] + self._seg_dir[i] * (s - self.s[i])

    def heading_at(self, s: float) -> float:
        """Heading (radians) of the segment containing arc length ``s``."""
        i = int(np.clip(np.searchsorted(self.s, float(s), side="right") - 1, 0, len(self._seg_len) - 1))
        return float(self._seg_heading[i])

    def curvature_at(self, s: float, span: float = 4.0) -> float:
        """Signed curvature (1/m, positive = turning right / yaw increasing) from headings ``span`` m apart."""
        a, b = max(0.0, s - span / 2), min(self.length, s + span / 2)
        if b - a < 1e-3:
            return 0.0
        return float(wrap_angle(self.heading_at(b) - self.heading_at(a)) / (b - a))

    def project(
        self, xy: Sequence[float], s_min: float = 0.0, s_max: float | None = None
    ) -> tuple[float, float, float]:
        """Closest point within [s_min, s_max]: returns (s, signed lateral offset (+ = right), distance)."""
        s_max = self.length if s_max is None else s_max
        lo = max(int(np.searchsorted(self.s, s_min, side="right")) - 1, 0)
        hi = min(int(np.searchsorted(self.s, s_max, side="left")) + 1, len(self._seg_len))
        p = np.asarray(xy, dtype=np.float64)[:2]
        starts, dirs, lens = self.points[lo:hi], self._seg_dir[lo:hi], self._seg_len[lo:hi]
        rel = p - starts
        t = np.clip(np.einsum("ij,ij->i", rel, dirs), 0.0, lens)
        closest = starts + dirs * t[:, None]
        d = np.linalg.norm(p - closest, axis=1)
        k = int(np.argmin(d))
        lateral = float(dirs[k, 0] * rel[k, 1] - dirs[k, 1] * rel[k, 0])
        return float(self.s[lo + k] + t[k]), lateral, float(d[k])

    def truncated(self, length_m: float) -> RoutePath:
        """The first ``length_m`` metres of the route."""
        if length_m >= self.length:
            return self
        n = int(np.searchsorted(self.s, length_m, side="right"))
        pts = np.vstack([self.points[:n], self.position_at(length_m)])
        return RoutePath(pts, self.options[:n] + [self.options[n - 1]], self.lane_width)


def build_route_path(network, legs: Sequence[RouteLeg], start_s: float, step: float = 1.0) -> RoutePath:
    """Sample the centreline of ``legs`` (a highway-env RoadNetwork's lanes) from ``start_s`` on the first leg."""
    points: list[np.ndarray] = []
    options: list[str] = []
    s_from = start_s
    i = 0
    while i < len(legs):
        leg = legs[i]
        lane = network.get_lane(leg.lane)
        nxt = legs[i + 1] if i + 1 < len(legs) else None
        if nxt is not None and nxt.lane[:2] == leg.lane[:2]:
            # Lane change: old lane up to change_at, a blended section, then continue on the new lane.
            target = network.get_lane(nxt.lane)
            s_end = min(nxt.change_at + nxt.change_length, lane.length)
            _sample(lane, s_from, nxt.change_at, step, leg.option, points, options, include_end=False)
            lateral_sign = np.sign(target.local_coordinates(lane.position(nxt.change_at, 0.0))[1])
            option = "CHANGELANERIGHT" if lateral_sign < 0 else "CHANGELANELEFT"
            _sample_blend(lane, target, nxt.change_at, s_end, step, option, points, options)
            s_from = s_end
            i += 1
            continue
        s_to = lane.length if leg.end_s is None or nxt is not None else min(leg.end_s, lane.length)
        _sample(lane, s_from, s_to, step, leg.option, points, options)
        s_from = 0.0
        i += 1
    return RoutePath(np.array(points), options, lane_width=float(network.get_lane(legs[0].lane).width_at(0.0)))


def _sample(
    lane, s0: float, s1: float, step: float, option: str, points: list, options: list, include_end: bool = True
) -> None:
    if s1 <= s0:
        return
    samples = np.arange(s0, s1, step)
    for s in np.append(samples, s1) if include_end else samples:
        points.append(np.asarray(lane.position(float(s), 0.0)))
        options.append(option)


def _sample_blend(lane, target, s0: float, s1: float, step: float, option: str, points: list, options: list) -> None:
    """Smoothstep from ``lane`` to ``target``; only the first point carries the lane-change option (as CARLA's
    route planner emits one CHANGELANE waypoint, and downsample_route keeps every such point)."""
    samples = np.append(np.arange(s0, s1, step), s1)
    for k, s in enumerate(samples):
        u = (s - s0) / max(s1 - s0, 1e-6)
        w = u * u * (3 - 2 * u)
        a = np.asarray(lane.position(float(s), 0.0))
        long_t, _ = target.local_coordinates(a)
        b = np.asarray(target.position(long_t, 0.0))
        points.append((1 - w) * a + w * b)
        options.append(option if k == 0 else "LANEFOLLOW")
