"""Embedded world: VehicleControl dynamics and leaderboard scoring on synthetic trajectories."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from highway_env.vehicle.kinematics import Vehicle

from automot.world.dynamics import (
    ControlInput,
    highway_wheel_angle,
    longitudinal_accel,
    path_curvature,
    read_control,
    steer_for_curvature,
    throttle_brake_for_accel,
)
from automot.world.leaderboard_record import INFRACTION_KEYS, LABELS
from automot.world.route_path import RoutePath
from automot.world.routes import load_route
from automot.world.scoring import Contact, RouteScorer, ScoringParams, build_results
from automot.world.sim import EmbeddedWorld

DT = 0.05


def _drive(world: EmbeddedWorld, control: ControlInput, ticks: int) -> None:
    for _ in range(ticks):
        world.apply_control(control)
        world.tick()


@pytest.fixture()
def empty_highway():
    spec = load_route("highway_lane_keep")
    world = EmbeddedWorld(spec)
    world.road.vehicles = [world.ego]  # no traffic: pure dynamics
    yield world
    world.close()


def test_throttle_accelerates_and_brake_stops(empty_highway):
    w = empty_highway
    _drive(w, ControlInput(throttle=1.0, steer=0.0, brake=0.0), 60)  # 3 s
    v = w.ego_state().speed
    assert 8.0 < v < 3.5 * 3.0 + 0.1
    _drive(w, ControlInput(throttle=0.0, steer=0.0, brake=1.0), 60)
    assert w.ego_state().speed == 0.0
    x = w.ego_state().x
    _drive(w, ControlInput(throttle=0.0, steer=0.0, brake=1.0), 20)  # no reverse at standstill
    assert w.ego_state().x == pytest.approx(x)


def test_steer_right_increases_carla_yaw(empty_highway):
    w = empty_highway
    w.ego.speed = 8.0
    yaw0 = w.ego_state().yaw
    _drive(w, ControlInput(throttle=0.2, steer=0.3, brake=0.0), 20)
    state = w.ego_state()
    assert state.yaw > yaw0 + 0.1
    assert state.y > 4.0  # drifted to +y (right of a +x heading)
    assert state.yaw_rate > 0


def test_highway_wheel_angle_reproduces_curvature():
    kappa = path_curvature(0.4, speed=5.0)
    v = Vehicle(None, [0.0, 0.0], heading=0.0, speed=5.0)
    v.action = {"steering": highway_wheel_angle(kappa, v.LENGTH), "acceleration": 0.0}
    positions = []
    for _ in range(200):
        v.step(0.01)
        positions.append(v.position.copy())
    heading_change = v.heading
    arc = 5.0 * 2.0
    assert heading_change / arc == pytest.approx(kappa, rel=0.02)


def test_friction_caps_curvature_at_speed():
    assert abs(path_curvature(1.0, speed=30.0)) == pytest.approx(8.0 / 900.0)
    assert path_curvature(-1.0, speed=1.0) < 0


def test_inverse_models_round_trip():
    for kappa in (-0.1, -0.01, 0.0, 0.02, 0.15):
        assert path_curvature(steer_for_curvature(kappa), speed=2.0) == pytest.approx(kappa, abs=1e-9)
    for accel, speed in ((2.0, 5.0), (-3.0, 10.0), (0.0, 20.0)):
        throttle, brake = throttle_brake_for_accel(accel, speed)
        control = ControlInput(throttle=throttle, steer=0.0, brake=brake)
        assert longitudinal_accel(control, speed, DT) == pytest.approx(accel, abs=1e-9)


def test_read_control_validates_and_clips():
    c = read_control(SimpleNamespace(throttle=1.5, steer=-2.0, brake=-1.0, hand_brake=True))
    assert (c.throttle, c.steer, c.brake, c.hand_brake) == (1.0, -1.0, 0.0, True)
    with pytest.raises(ValueError, match="non-finite"):
        read_control(SimpleNamespace(throttle=float("nan"), steer=0.0, brake=0.0))
    with pytest.raises(TypeError, match="VehicleControl"):
        read_control(None)


# ---- scoring ------------------------------------------------------------------------------------------------------
def _straight(length: float = 100.0) -> RoutePath:
    xs = np.arange(0.0, length + 1e-9, 1.0)
    return RoutePath(np.stack([xs, np.zeros_like(xs)], axis=1), ["LANEFOLLOW"] * len(xs))


def _run(scorer: RouteScorer, xs, y: float = 0.0, speed: float = 5.0, **kwargs) -> None:
    for x in xs:
        scorer.step(float(x), y, speed, **kwargs)


def test_full_route_is_perfect():
    scorer = RouteScorer(_straight(), DT, tick_limit=1000)
    _run(scorer, np.arange(0.0, 101.0, 0.5))
    assert scorer.done and scorer.completed
    # As on the leaderboard, min-speed checkpoints are listed infractions (no penalty), so a clean route is
    # "Completed" with only min_speed_infractions (what Bench2Drive counts as a success), not "Perfect".
    record = scorer.record("demo", "embedded/highway-v0", duration_game=5.0, duration_system=1.0)
    assert [k for k, v in record["infractions"].items() if v] == ["min_speed_infractions"]
    assert len(record["infractions"]["min_speed_infractions"]) == 19  # one per > 5 m until 99 %, + the final one
    assert scorer.status() == "Completed"
    assert scorer.scores() == {"score_route": 100.0, "score_penalty": 1.0, "score_composed": 100.0}


def test_partial_route_times_out_with_fractional_rc():
    scorer = RouteScorer(_straight(), DT, tick_limit=200)
    _run(scorer, np.linspace(0.0, 40.0, 100))
    _run(scorer, [40.0] * 200, speed=0.0)
    assert scorer.status() == "Failed - Agent timed out"
    assert scorer.infractions["route_timeout"] == ["Route timeout."]
    assert scorer.scores()["score_route"] == pytest.approx(40.0, abs=0.5)
    assert scorer.scores()["score_composed"] == pytest.approx(40.0, abs=0.5)


def test_a_users_tick_cap_stops_the_route_without_a_timeout():
    scorer = RouteScorer(_straight(), DT, tick_limit=150, limit_is_cap=True)
    _run(scorer, np.linspace(0.0, 40.0, 100))
    _run(scorer, [40.0] * 200, speed=0.0)
    assert scorer.ticks == 150 and scorer.status() == "Stopped - tick limit"
    assert scorer.infractions["route_timeout"] == [] and scorer.penalty == 1.0
    assert scorer.scores()["score_composed"] == pytest.approx(40.0, abs=0.5)  # DS = RC reached x penalties


def test_vehicle_collisions_penalise_once_per_actor():
    scorer = RouteScorer(_straight(), DT, tick_limit=1000)
    car = Contact(id=7, type_id="vehicle.highway_env.idmvehicle")
    _run(scorer, np.linspace(0.0, 20.0, 20), contacts=[car])  # one long contact with the same car
    assert len(scorer.infractions["collisions_vehicle"]) == 1
    other = Contact(id=8, type_id="vehicle.highway_env.idmvehicle")
    _run(scorer, np.linspace(21.0, 60.0, 100))
    _run(scorer, [60.5], contacts=[other])
    _run(scorer, np.linspace(61.0, 100.0, 100))
    assert len(scorer.infractions["collisions_vehicle"]) == 2
    assert scorer.scores()["score_penalty"] == pytest.approx(0.36)
    assert scorer.status() == "Completed"
    assert "type=vehicle.highway_env.idmvehicle and id=7" in scorer.infractions["collisions_vehicle"][0]


def test_static_and_offroad_are_layout_collisions():
    scorer = RouteScorer(_straight(), DT, tick_limit=1000)
    _run(scorer, np.linspace(0.0, 10.0, 20), on_road=False)  # one excursion -> one event
    _run(scorer, np.linspace(10.0, 20.0, 20))
    _run(scorer, np.linspace(20.0, 30.0, 20), on_road=False)  # a second excursion
    assert len(scorer.infractions["collisions_layout"]) == 2
    assert scorer.scores()["score_penalty"] == pytest.approx(0.65**2)


def test_outside_route_lanes_scales_penalty_by_distance():
    scorer = RouteScorer(_straight(), DT, tick_limit=1000)
    _run(scorer, np.linspace(0.0, 10.0, 11), in_lanes=False)  # 10 m outside
    _run(scorer, np.arange(10.5, 101.0, 0.5))
    assert scorer.scores()["score_penalty"] == pytest.approx(0.9)
    message = scorer.infractions["outside_route_lanes"][0]
    assert float(message.split(" ")[8]) == pytest.approx(10.0)  # where LB2 parses the metres from


def test_route_deviation_and_blocked_end_the_route():
    dev = RouteScorer(_straight(), DT, tick_limit=1000)
    _run(dev, [0.0, 1.0])
    dev.step(2.0, 31.0, 5.0)
    assert dev.done and dev.status() == "Failed - Agent deviated from the route"
    blocked = RouteScorer(_straight(), DT, tick_limit=1000, params=ScoringParams(blocked_time_s=2.0))
    _run(blocked, [5.0] * 39, speed=0.0)
    assert not blocked.done
    _run(blocked, [5.0], speed=0.0)
    assert blocked.status() == "Failed - Agent got blocked"
    assert len(blocked.infractions["vehicle_blocked"]) == 1


def test_results_json_layout():
    scorer = RouteScorer(_straight(), DT, tick_limit=100)
    _run(scorer, np.linspace(0.0, 50.0, 100), contacts=[Contact(1, "vehicle.x")])
    record = scorer.record("demo", "embedded/highway-v0", duration_game=5.0, duration_system=1.0)
    results = build_results([record], ["carla_camera"])
    assert set(results) >= {"_checkpoint", "entry_status", "eligible", "sensors", "values", "labels"}
    assert results["entry_status"] == "Finished" and results["eligible"] is True
    rec = results["_checkpoint"]["records"][0]
    assert set(rec["infractions"]) == set(INFRACTION_KEYS) and len(INFRACTION_KEYS) == 12
    assert all(isinstance(v, list) for v in rec["infractions"].values())
    # one collision + the timeout + a min-speed entry per 5 m (1/20 of the route) passed
    assert rec["num_infractions"] == 2 + len(rec["infractions"]["min_speed_infractions"]) == 2 + 9
    assert rec["status"] == "Failed - Agent timed out"
    assert set(rec["meta"]) == {"route_length", "duration_game", "duration_system"}
    assert (
        results["score_composed"]
        == rec["scores"]["score_composed"]
        == pytest.approx(0.6 * rec["scores"]["score_route"])
    )
    assert len(results["values"]) == len(LABELS) == 15
    assert results["_checkpoint"]["progress"] == [1, 1]
    assert results["_checkpoint"]["global_record"]["scores_mean"]["score_composed"] == results["score_composed"]
    assert math.isclose(results["_checkpoint"]["global_record"]["meta"]["total_length"], 100.0)
