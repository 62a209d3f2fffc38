"""GNSS conversion, compass guard, route planner and leaderboard-contract helpers (angle wrapping and the
ego transform: tests/core/test_geometry.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from automot.agent.contract import (
    AutonomousAgent,
    RoadOption,
    Track,
    downsample_route,
    make_control,
    road_option_value,
)
from automot.agent.geometry import (
    compass_to_yaw,
    gps_to_local,
    local_to_gps,
    solve_georeference,
)
from automot.agent.route_planner import RoutePlanner, RoutePlannerConfig

WORLD = np.array([[0.0, 0.0], [152.3, -87.1], [-1250.0, 3400.5], [4000.0, -4000.0]])


@pytest.mark.parametrize("ref", [(42.0, 2.0), (48.137, 11.575), (-33.86, 151.21)])
def test_gnss_round_trip_under_10cm(ref):
    gps = local_to_gps(WORLD[:, 0], WORLD[:, 1], *ref)
    back = gps_to_local(gps[:, 0], gps[:, 1], *ref)
    assert np.abs(back - WORLD).max() < 0.1


def test_gnss_axes_follow_carla():
    # East is +x, north is -y in CARLA's left-handed world.
    north = gps_to_local(42.001, 2.0)
    east = gps_to_local(42.0, 2.001)
    assert north[1] < -100 and abs(north[0]) < 1e-6
    assert east[0] > 50 and abs(east[1]) < 1e-6


def test_fsolve_recovers_non_default_reference_and_round_trips():
    true_ref = (35.6812, 139.7671)
    gps = local_to_gps(WORLD[:, 0], WORLD[:, 1], *true_ref)
    lat_ref, lon_ref = solve_georeference(WORLD[1], gps[1])
    assert abs(lat_ref - true_ref[0]) < 1e-7 and abs(lon_ref - true_ref[1]) < 1e-7
    back = gps_to_local(gps[:, 0], gps[:, 1], lat_ref, lon_ref)
    assert np.abs(back - WORLD).max() < 0.1


def test_fsolve_rejects_nan():
    with pytest.raises(ValueError):
        solve_georeference((0.0, 0.0), (math.nan, 2.0))


def test_compass_guard():
    assert compass_to_yaw(math.nan) == pytest.approx(-math.pi / 2)  # NaN -> 0 -> facing north
    assert compass_to_yaw(math.nan, fallback=math.pi / 2) == pytest.approx(0.0)
    assert compass_to_yaw(math.pi / 2) == pytest.approx(0.0)  # east
    assert compass_to_yaw(0.1) == pytest.approx(0.1 - math.pi / 2)
    yaw = compass_to_yaw(-math.pi + 0.05)  # would be below -pi without wrapping
    assert -math.pi < yaw <= math.pi and yaw == pytest.approx(math.pi / 2 + 0.05)
    # The boundary: west (compass -pi/2 or 3pi/2) is yaw +pi, never -pi, in the released (-pi, pi] interval.
    assert compass_to_yaw(-math.pi / 2) == math.pi
    assert compass_to_yaw(1.5 * math.pi) == math.pi
    assert compass_to_yaw(-math.pi / 2 + 1e-9) == pytest.approx(-math.pi + 1e-9, abs=1e-12)  # just inside
    assert compass_to_yaw(-math.pi / 2 - 1e-9) == pytest.approx(math.pi - 1e-9, abs=1e-12)  # just past: wraps


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


def test_local_base_agent_downsamples_plan():
    agent = AutonomousAgent("localhost", 2000)
    assert agent.track == Track.SENSORS and agent._global_plan is None and agent.wallclock_t0 is None
    world = [((float(i), 0.0, 0.0), RoadOption.LANEFOLLOW) for i in range(120)]
    gps = [({"lat": 42.0, "lon": 2.0 + i * 1e-5, "z": 0.0}, RoadOption.LANEFOLLOW) for i in range(120)]
    agent.set_global_plan(gps, world)
    assert len(agent._global_plan) == len(agent._global_plan_world_coord) == 4  # 0, 50, 100, 119
    assert len(agent._plan_HACK) == 120


def test_contract_values():
    assert [road_option_value(o) for o in RoadOption] == [-1, 1, 2, 3, 4, 5, 6]
    control = make_control(throttle=1.7, steer=-3.0, brake=-1.0)
    assert (control.throttle, control.steer, control.brake, control.manual_gear_shift) == (1.0, -1.0, 0.0, False)
