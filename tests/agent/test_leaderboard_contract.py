"""The leaderboard agent contract without CARLA (agent/contract.py): the local AutonomousAgent base class downsamples
its global plan like the leaderboard's, RoadOption values and make_control's clamping."""

from __future__ import annotations

from automot.agent.contract import AutonomousAgent, RoadOption, Track, make_control, road_option_value


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
