"""The agent's route planner (agent/route_planner.py: reached points, scan window, lane-change reach, target-point
fallbacks) and the leaderboard's route downsampling (agent/contract.py downsample_route)."""

from __future__ import annotations

import math

import numpy as np

from automot.agent.contract import RoadOption, downsample_route
from automot.agent.route_planner import RoutePlanner, RoutePlannerConfig


def _route(n: int, spacing: float = 10.0) -> list:
    return [(np.array([i * spacing, 0.0]), RoadOption.LANEFOLLOW) for i in range(n)]


def test_route_planner_pops_reached_points_and_keeps_two():
    planner = RoutePlanner(RoutePlannerConfig(min_distance=7.5, max_distance=50.0))
    planner.set_route(_route(6))
    planner.update(np.array([0.0, 0.0]))
    assert len(planner) == 6  # nothing within 7.5 m except the point we stand on
    planner.update(np.array([14.0, 0.0]))  # 4 m from point 1, 6 m from point 2
    assert len(planner) == 4 and planner.route[0][0][0] == 20.0
    tps = planner.target_points(np.array([14.0, 0.0]), 0.0)
    np.testing.assert_allclose(tps.stacked(), [[30.0, 0.0], [40.0, 0.0]])
    planner.update(np.array([200.0, 0.0]))  # far past the end: never below two points
    planner.update(np.array([50.0, 0.0]))
    assert len(planner) == 2


def test_route_planner_scans_only_max_distance():
    planner = RoutePlanner(RoutePlannerConfig(min_distance=7.5, max_distance=25.0))
    planner.set_route(_route(10))
    planner.update(np.array([60.0, 0.0]))  # point 6 is reached but lies beyond the 25 m scan window
    assert len(planner) == 10


def test_route_planner_lane_change_reached_earlier():
    route = _route(3) + [(np.array([30.0, 3.5]), RoadOption.CHANGELANELEFT), (np.array([60.0, 3.5]), 4)]
    planner = RoutePlanner(RoutePlannerConfig(lane_change_distance=15.0))
    planner.set_route(route)
    planner.update(np.array([19.0, 0.0]))  # 11.5 m from the lane-change point
    assert planner.route[0][1] == 5
    plain = RoutePlanner(RoutePlannerConfig(lane_change_distance=None))
    plain.set_route(route)
    plain.update(np.array([19.0, 0.0]))
    assert plain.route[0][0][0] == 20.0


def test_route_planner_fallbacks():
    cfg = RoutePlannerConfig()
    planner = RoutePlanner(cfg)
    planner.set_route([(np.array([0.0, 0.0]), 4), (np.array([20.0, 0.0]), 3)])
    tps = planner.target_points(np.array([0.0, 0.0]), 0.0)  # 2 points: next TP 5 m beyond TP along ego->TP
    np.testing.assert_allclose(tps.stacked(), [[20.0, 0.0], [25.0, 0.0]])
    assert tps.command == 3

    planner.set_route([(np.array([10.0, 10.0]), 4)])  # 1 point: TP = route[0], next along ego->TP
    tps = planner.target_points(np.array([10.0, 0.0]), 0.0)
    np.testing.assert_allclose(tps.stacked(), [[10.0, 10.0], [10.0, 15.0]])
    tps = planner.target_points(np.array([10.0, 10.0]), math.pi / 2)  # standing on it: use the heading
    np.testing.assert_allclose(tps.stacked(), [[10.0, 10.0], [10.0, 15.0]], atol=1e-9)

    planner.set_route([])  # 0 points: TP = ego, next TP 50 m ahead
    tps = planner.target_points(np.array([3.0, 4.0]), math.pi)
    np.testing.assert_allclose(tps.stacked(), [[3.0, 4.0], [-47.0, 4.0]], atol=1e-9)
    assert tps.remaining == 0


def test_downsample_keeps_option_changes_lane_changes_and_last():
    pts = [(i * 1.0, 0.0) for i in range(200)]
    options = [4] * 200
    options[120] = 5  # a lane change
    options[150:] = [1] * 50  # then a left turn
    route = [(p, o) for p, o in zip(pts, options)]
    kept = downsample_route(route, 50.0)
    # The leaderboard's rule: > 50 m accumulated over non-kept steps (0 -> 52 -> 104), the lane-change point but
    # not the one after it, option changes, the last point (tests/world/test_leaderboard_known_breakages.py checks the real function).
    assert kept == [0, 52, 104, 120, 150, 199]
