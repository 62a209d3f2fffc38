"""Privileged rule-based driver for the embedded world (sees the true route and every vehicle).

Lateral: pure pursuit on the route centreline, lookahead 2.5 m + 0.3 s x speed, turned into a steer command through
the inverse of ``world.dynamics``' curvature model. Longitudinal: the Intelligent Driver Model against
  * leaders: vehicles and obstacles whose footprint overlaps the ego's corridor along the route ahead;
  * curve speed: v <= sqrt(a_lat / |curvature|) on the path ahead, reachable with comfortable braking;
  * conflicts: traffic whose predicted path (its planned route at constant speed; standing cars assumed to pull
    away) occupies the corridor while the ego would (its own arrival window widened by ``clear_before_s`` /
    ``clear_after_s``) becomes a standing obstacle at the conflict point, or at the junction entry for conflicts
    inside a junction: the ego yields (merges behind, waits at the junction or roundabout entry). Followers in
    the ego's lane are ignored, and after ``patience_s`` of mutual waiting standing cars are too (deadlock break).
The result is mapped to throttle/brake with the inverse longitudinal model, so the expert drives through exactly
the same VehicleControl path as any agent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from highway_env.vehicle.objects import Landmark
from scipy.spatial import cKDTree

from automot.geometry import wrap_angle
from automot.world.dynamics import ControlInput, steer_for_curvature, throttle_brake_for_accel
from automot.world.geometry import obb_corners
from automot.world.sim import EmbeddedWorld


@dataclass(frozen=True)
class ExpertParams:
    """Driving style constants (SI)."""

    accel: float = 2.5
    decel: float = 3.0
    max_decel: float = 8.0
    time_gap: float = 1.2
    jam_gap: float = 2.5
    lat_accel: float = 2.5
    lookahead_min: float = 2.5
    lookahead_gain: float = 0.3
    corridor_margin: float = 0.4
    horizon_s: float = 5.0
    clear_before_s: float = 1.0
    clear_after_s: float = 1.5
    perception_m: float = 90.0
    start_speed: float = 3.0
    patience_s: float = 4.0


class ExpertDriver:
    """Computes one ``ControlInput`` per tick from the world's true state."""

    def __init__(self, world: EmbeddedWorld, params: ExpertParams = ExpertParams()) -> None:
        self.world = world
        self.params = params
        self.path = world.path
        self.target_speed = world.spec.target_speed
        self._s = 0.0
        grid = np.arange(0.0, self.path.length, 1.0)
        self._kappa = np.array([abs(self.path.curvature_at(s, span=6.0)) for s in grid])
        self._times = np.arange(0.25, params.horizon_s + 1e-9, 0.25)
        self._grid = self.path.s
        self._tree = cKDTree(self.path.points)
        self._waited = 0.0
        self._junctions = _junction_spans(self.path)
        self.last_obstacles: list[tuple[float, float]] = []

    def control(self) -> ControlInput:
        """Throttle/steer/brake for the current tick."""
        ego = self.world.ego_state()
        s, _, _ = self.path.project((ego.x, ego.y), self._s - 5.0, self._s + 30.0)
        self._s = s
        steer = self._pure_pursuit(ego, s)
        accel = self._longitudinal(ego, s)
        if ego.speed < 0.3 and accel < 0.0:
            return ControlInput(throttle=0.0, steer=steer, brake=1.0)  # hold at standstill
        throttle, brake = throttle_brake_for_accel(accel, ego.speed, self.world.params)
        return ControlInput(throttle=throttle, steer=steer, brake=brake)

    # ---- lateral ------------------------------------------------------------------------------------------------
    def _pure_pursuit(self, ego, s: float) -> float:
        p = self.params
        lookahead = p.lookahead_min + p.lookahead_gain * ego.speed
        target = self.path.position_at(s + lookahead)
        if s + lookahead > self.path.length:  # extend straight past the end of the route
            extra = s + lookahead - self.path.length
            h = self.path.heading_at(self.path.length)
            target = target + extra * np.array([math.cos(h), math.sin(h)])
        dx, dy = target[0] - ego.x, target[1] - ego.y
        alpha = wrap_angle(math.atan2(dy, dx) - ego.yaw)
        dist = max(math.hypot(dx, dy), 1e-3)
        return steer_for_curvature(2.0 * math.sin(alpha) / dist, self.world.params)

    # ---- longitudinal -------------------------------------------------------------------------------------------
    def _longitudinal(self, ego, s: float) -> float:
        p = self.params
        v0 = min(self.target_speed, self._curve_speed(ego.speed, s))
        accel = p.accel * (1.0 - (ego.speed / max(v0, 0.1)) ** 4) if v0 > 0.1 else -p.decel
        self.last_obstacles = self._obstacles(ego, s)
        for gap, lead_speed in self.last_obstacles:
            accel = min(accel, self._idm_term(ego.speed, v0, gap, lead_speed))
        return float(np.clip(accel, -p.max_decel, p.accel))

    def _idm_term(self, v: float, v0: float, gap: float, lead_speed: float) -> float:
        p = self.params
        if gap <= 0.3:
            return -p.max_decel
        dv = v - lead_speed
        s_star = p.jam_gap + max(0.0, v * p.time_gap + v * dv / (2.0 * math.sqrt(p.accel * p.decel)))
        free = 1.0 - (v / max(v0, 0.1)) ** 4 if v0 > 0.1 else -1.0
        return p.accel * (free - (s_star / gap) ** 2)

    def _curve_speed(self, v: float, s: float) -> float:
        p = self.params
        i0 = int(s)
        reach = int(20 + v * v / (2 * p.decel))
        kappa = self._kappa[i0 : i0 + reach]
        if not len(kappa):
            return self.target_speed
        dist = np.arange(len(kappa), dtype=np.float64)
        v_curve = np.sqrt(p.lat_accel / np.maximum(kappa, 1e-4))
        return float(np.min(np.sqrt(v_curve**2 + 2.0 * p.decel * np.maximum(dist - 2.0, 0.0))))

    def _obstacles(self, ego, s_ego: float) -> list[tuple[float, float]]:
        """(gap along the route, speed along the route) of leaders and of yield points ahead."""
        p = self.params
        ego_half_len = self.world.params.length / 2
        corridor = self.world.params.width / 2 + p.corridor_margin
        self._waited = self._waited + self.world.dt if ego.speed < 0.2 else 0.0
        out = []
        road = self.world.road
        ego_xy = np.array([ego.x, ego.y])
        for obj in [*road.vehicles, *road.objects]:
            if obj is self.world.ego or isinstance(obj, Landmark):
                continue
            if np.linalg.norm(obj.position - ego_xy) > p.perception_m:
                continue
            span = self._corridor_span(obj.position, obj.heading, obj.LENGTH, obj.WIDTH, s_ego, corridor)
            if span is not None:
                s_min, _ = span
                if s_min > s_ego - ego_half_len:  # ahead of (or beside) the ego's front half: a leader
                    heading = self.path.heading_at(s_min)
                    along = float(getattr(obj, "speed", 0.0)) * math.cos(float(obj.heading) - heading)
                    out.append((s_min - s_ego - ego_half_len, max(along, 0.0)))
                continue
            if not hasattr(obj, "route") or self._follows(obj, s_ego, corridor):
                continue
            slow = obj.speed < 0.5
            if slow and self._waited > p.patience_s:
                continue  # both waiting: the standing vehicle evidently waits for us, so go
            conflict = self._conflict(obj, ego, s_ego, corridor)
            if conflict is not None:
                out.append((conflict - s_ego - ego_half_len, 0.0))
        return out

    def _corridor_span(self, pos, heading, length, width, s_ego, corridor) -> tuple[float, float] | None:
        """Arc-length span of a footprint that overlaps the ego corridor ahead of the ego, else None."""
        lo, hi = s_ego - 8.0, s_ego + self.params.perception_m
        d, i = self._tree.query(pos[:2])
        if d > corridor + max(length, width) + 1.0 or not lo - 5.0 <= self._grid[i] <= hi + 5.0:
            return None  # far from the route (path points are 1 m apart, so this prefilter is conservative)
        corners = obb_corners(pos[0], pos[1], heading, length, width)
        proj = [self.path.project(c, lo, hi) for c in corners]
        lats = [lat for _, lat, _ in proj]
        if min(lats) > corridor or max(lats) < -corridor:
            return None
        if max(d - abs(lat) for _, lat, d in proj) > 1.0:  # projected onto an end of the window: not alongside
            return None
        ss = [si for si, _, _ in proj]
        return min(ss), max(ss)

    def _follows(self, vehicle, s_ego: float, corridor: float) -> bool:
        """A vehicle behind the ego in its lane: it reacts to us, so it is never a reason to yield."""
        s, lat, dist = self.path.project(vehicle.position, s_ego - 80.0, s_ego)
        aligned = abs(wrap_angle(float(vehicle.heading) - self.path.heading_at(s))) < math.pi / 4
        return abs(lat) < corridor + 1.0 and dist - abs(lat) < 1.0 and aligned

    def _predict(self, vehicle) -> list[tuple[np.ndarray, float]]:
        """Route-following positions over the horizon; a standing vehicle is assumed to pull away at
        ``start_speed`` (it may be about to go, and entering its lane then would block it)."""
        speed = max(float(vehicle.speed), self.params.start_speed)
        net = self.world.network
        lane_index = vehicle.lane_index
        lanes = [net.get_lane(lane_index)]
        for road in vehicle.route or []:
            if road[:2] == lane_index[:2] or road[0] != lane_index[1] and len(lanes) == 1:
                continue  # the current road (or a stale entry before it)
            n = len(net.graph[road[0]][road[1]])
            lanes.append(net.get_lane((road[0], road[1], min(lane_index[2], n - 1))))
        s = lanes[0].local_coordinates(vehicle.position)[0]
        out = []
        for t in self._times:
            d, k = s + speed * t, 0
            while k < len(lanes) - 1 and d > lanes[k].length:
                d -= lanes[k].length
                k += 1
            out.append((lanes[k].position(d, 0.0), lanes[k].heading_at(d)))
        return out

    def _conflict(self, vehicle, ego, s_ego: float, corridor: float) -> float | None:
        """Stop arc length when ``vehicle``'s predicted path occupies part of the ego corridor while the ego
        would be there (plus safety margins), else None."""
        p = self.params
        half = self.world.params.length / 2
        for t, (pos, heading) in zip(self._times, self._predict(vehicle)):
            span = self._corridor_span(pos, heading, vehicle.LENGTH, vehicle.WIDTH, s_ego, corridor)
            if span is None or span[1] < s_ego:
                continue
            vmax = self._cruise_speed(s_ego, span[1] + half)
            t_in = self._arrival_time(ego.speed, max(span[0] - s_ego - half, 0.0), vmax)
            t_out = self._arrival_time(ego.speed, max(span[1] - s_ego + half, 0.0), vmax)
            if t_in - p.clear_before_s <= t <= t_out + p.clear_after_s:
                # Wait behind the conflict point, or at the junction entry when it is inside a junction (never
                # stop inside one); past the stop point we are committed, but it may still cut in further on.
                stop = self._junction_entry(span[0]) - 0.5
                if stop - s_ego > 1.0:
                    return stop
        return None

    def _cruise_speed(self, s0: float, s1: float) -> float:
        """Highest speed the ego can hold between two arc lengths (target speed and curve limits)."""
        kappa = self._kappa[int(max(s0, 0)) : int(max(s1, s0)) + 1]
        k = float(kappa.max()) if len(kappa) else 0.0
        return min(self.target_speed, math.sqrt(self.params.lat_accel / max(k, 1e-4)))

    def _junction_entry(self, s_conflict: float) -> float:
        """Entry arc length of the junction containing ``s_conflict`` (conflict point minus 1 m otherwise)."""
        for a, b in self._junctions:
            if a - 2.0 <= s_conflict <= b + self.world.params.length:
                return a - self.world.params.length / 2
        return s_conflict - 1.0

    def _arrival_time(self, v: float, distance: float, vmax: float) -> float:
        """Time to cover ``distance`` accelerating at ``accel`` from ``v`` up to ``vmax``."""
        a, vmax = self.params.accel, max(vmax, v, 0.5)
        d_acc = (vmax * vmax - v * v) / (2 * a)
        if distance <= d_acc:
            return (-v + math.sqrt(v * v + 2 * a * distance)) / a
        return (vmax - v) / a + (distance - d_acc) / vmax


def _junction_spans(path) -> list[tuple[float, float]]:
    """[start, end] arc lengths of the route's junction turns (points carrying LEFT/RIGHT/STRAIGHT)."""
    spans, start = [], None
    for s, option in zip(path.s, path.options):
        inside = option in ("LEFT", "RIGHT", "STRAIGHT")
        if inside and start is None:
            start = s
        elif not inside and start is not None:
            spans.append((start, s))
            start = None
    if start is not None:
        spans.append((start, path.length))
    return spans
