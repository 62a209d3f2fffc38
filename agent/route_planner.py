"""Route following: pops passed route points and yields the two target points the model is conditioned on.

Behaviour from docs/released-agent.md §2 (TransFuser++'s ``RoutePlanner(7.5, 50.0)`` as used by AutoMoT).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from automot.agent.contract import road_option_value
from automot.geometry import heading_vector

_LANE_CHANGE_OPTIONS = (5, 6)  # RoadOption.CHANGELANELEFT / CHANGELANERIGHT
_LANE_FOLLOW = 4  # RoadOption.LANEFOLLOW


@dataclass
class RoutePlannerConfig:
    """Distances in metres (defaults: docs/released-agent.md §2)."""

    min_distance: float = 7.5  # points closer than this are considered reached
    max_distance: float = 50.0  # only points within this cumulative route length are scanned
    # Lane-change points count as reached from this far away (so the lane change starts early), under the TF++
    # conditions of the released nav_planner.py: the segment after the point is shorter than min_distance, or
    # the point after it is LANEFOLLOW. None uses min_distance for every point.
    lane_change_distance: float | None = 15.0
    next_tp_extension: float = 5.0  # 1-2 points left: next TP placed this far beyond the TP
    no_route_lookahead: float = 50.0  # 0 points left: next TP this far ahead along the heading


@dataclass(frozen=True)
class TargetPoints:
    """Current and next target point in world metres, plus the RoadOption value of the current one."""

    target: np.ndarray  # (2,)
    next_target: np.ndarray  # (2,)
    command: int
    remaining: int  # route points left in the planner

    def stacked(self) -> np.ndarray:
        """(2, 2) array [target, next_target]."""
        return np.stack([self.target, self.next_target]).astype(np.float64)


class RoutePlanner:
    """Keeps the remaining route and advances it as the ego passes points."""

    def __init__(self, config: RoutePlannerConfig | None = None) -> None:
        self.config = config or RoutePlannerConfig()
        self.route: deque[tuple[np.ndarray, int]] = deque()

    def set_route(self, points: list[tuple[np.ndarray, int]]) -> None:
        """Replace the route with [(world xy, RoadOption value)]."""
        self.route = deque((np.asarray(xy, dtype=np.float64).reshape(2), road_option_value(opt)) for xy, opt in points)

    def __len__(self) -> int:
        return len(self.route)

    def update(self, ego_xy: np.ndarray) -> None:
        """Pop every point before the 'reached' point farthest from the ego, scanning max_distance of route.

        "Farthest" is by distance to the ego, as in TF++'s planner (not by route index); with the usual 50 m
        point spacing at most one point is in reach, so the two readings rarely differ. Never pops below two
        points, so route[1] (the target point) stays defined until the end.
        """
        cfg = self.config
        ego = np.asarray(ego_xy, dtype=np.float64).reshape(2)
        route = self.route
        to_pop = 0
        farthest_reached = -math.inf
        cumulative = 0.0
        for i in range(1, len(route)):
            if cumulative > cfg.max_distance:
                break
            cumulative += float(np.linalg.norm(route[i][0] - route[i - 1][0]))
            distance = float(np.linalg.norm(route[i][0] - ego))
            reach = cfg.lane_change_distance if self._lane_change_reach(i) else cfg.min_distance
            if distance <= reach and distance > farthest_reached:
                farthest_reached = distance
                to_pop = i
        for _ in range(to_pop):
            if len(route) <= 2:
                break
            route.popleft()

    def _lane_change_reach(self, i: int) -> bool:
        """Whether route[i] gets the longer lane-change reach (nav_planner.py RoutePlanner.run_step).

        For the last point the released code indexes past the end of the route (an IndexError that would end
        the route); here the last point simply gets the normal reach.
        """
        route, cfg = self.route, self.config
        if cfg.lane_change_distance is None or route[i][1] not in _LANE_CHANGE_OPTIONS or i + 1 >= len(route):
            return False
        next_segment = float(np.linalg.norm(route[i + 1][0] - route[i][0]))
        return next_segment < cfg.min_distance or route[i + 1][1] == _LANE_FOLLOW

    def pop_points(self, count: int, keep: int) -> int:
        """Drop up to ``count`` points from the front, never leaving fewer than ``keep``; returns how many.

        Used by the parking escape to skip the part of the route the ego is stuck on (docs/released-agent.md §6).
        """
        n = max(0, min(int(count), len(self.route) - int(keep)))
        for _ in range(n):
            self.route.popleft()
        return n

    def target_points(self, ego_xy: np.ndarray, yaw: float) -> TargetPoints:
        """TP = route[1], next TP = route[2], with the released fallbacks (docs/released-agent.md §2) when fewer
        points remain."""
        cfg = self.config
        ego = np.asarray(ego_xy, dtype=np.float64).reshape(2)
        route = self.route
        if len(route) >= 3:
            return TargetPoints(route[1][0].copy(), route[2][0].copy(), route[1][1], len(route))
        if len(route) == 0:
            ahead = ego + cfg.no_route_lookahead * heading_vector(yaw)
            return TargetPoints(ego.copy(), ahead, 4, 0)  # 4 = LANEFOLLOW
        target, command = route[1] if len(route) == 2 else route[0]
        offset = target - ego
        norm = float(np.linalg.norm(offset))
        # Extend along ego->TP; when the ego sits on the TP that direction is undefined, so use the heading.
        direction = offset / norm if norm >= 1e-3 else heading_vector(yaw)
        return TargetPoints(target.copy(), target + cfg.next_tp_extension * direction, command, len(route))
