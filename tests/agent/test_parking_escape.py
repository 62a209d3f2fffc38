"""Parking-deadlock escape (docs/released-agent.md §6) with the released numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from automot.agent.automot_agent import AutoMoTAgent
from automot.agent.config import ConfigError, agent_config_from_dict
from automot.agent.control import ControlConfig, DrivingController, EscapeConfig, SafetyConfig
from automot.agent.escape import ParkingEscape
from automot.agent.route_planner import RoutePlanner

WARMUP = 31
FIRST_TRIGGER = 1700  # first snapshot on a driving tick is 200; it is 1500 ticks old at 1700
HERE = np.array([10.0, 20.0])
STRAIGHT = np.stack([np.arange(1, 21, dtype=float), np.zeros(20)], axis=1)
STOP = np.zeros((6, 2))


def _planner(n: int = 10) -> RoutePlanner:
    planner = RoutePlanner()
    planner.set_route([(np.array([50.0 * i, 0.0]), 4) for i in range(n)])
    return planner


def _idle(escape: ParkingEscape, start: int, stop: int, position=HERE, yaw: float = 0.0) -> list[int]:
    """Run ``update`` on ticks [start, stop) without motion; return the ticks on which the escape was active."""
    active = []
    for tick in range(start, stop):
        escape.update(tick, position, yaw)
        if escape.active:
            active.append(tick)
    return active


def test_defaults_are_the_spec_numbers():
    cfg = EscapeConfig()
    assert not cfg.enabled
    assert (cfg.snapshot_every, cfg.window_ticks, cfg.max_displacement) == (200, 1500, 5.0)
    assert (cfg.duration_ticks, cfg.cooldown_ticks, cfg.pop_points, cfg.keep_points) == (40, 2400, 5, 3)
    assert (cfg.target_x, cfg.next_target_x, cfg.target_y, cfg.target_y_per_attempt) == (3.0, 6.0, 5.0, 1.5)
    assert (cfg.steer, cfg.throttle, cfg.end_heading_deg, cfg.end_displacement) == (-0.65, 0.45, 25.0, 6.0)


def test_triggers_exactly_after_the_deadlock_window():
    planner = _planner(10)
    escape = ParkingEscape(EscapeConfig(enabled=True), planner)
    assert _idle(escape, WARMUP, FIRST_TRIGGER) == []
    assert [t for t, _ in escape.snapshots] == list(range(200, 1700, 200))
    escape.update(FIRST_TRIGGER, HERE, 0.0)
    assert escape.active and escape.attempt == 1 and escape.timer == 39  # counted down on the trigger tick
    assert escape.popped == 5 and len(planner) == 5  # min(5, 10 - 3)

    short = _planner(5)
    escape_short = ParkingEscape(EscapeConfig(enabled=True), short)
    _idle(escape_short, WARMUP, FIRST_TRIGGER + 1)
    assert escape_short.popped == 2 and len(short) == 3  # never below 3 points
    assert _planner(3).pop_points(5, 3) == 0


def test_overrides_target_points_and_control_while_active():
    escape = ParkingEscape(EscapeConfig(enabled=True), _planner())
    original = np.array([[40.0, 1.0], [90.0, 1.0]], dtype=np.float32)
    assert escape.adjust_target_points(0, original) is original and escape.override(0, HERE, 0.0) is None
    _idle(escape, WARMUP, FIRST_TRIGGER + 1)
    np.testing.assert_allclose(escape.adjust_target_points(FIRST_TRIGGER, original), [[3.0, 6.5], [6.0, 6.5]])
    cmd = escape.override(FIRST_TRIGGER, HERE, 0.0)
    assert (cmd.steer, cmd.throttle, cmd.brake, cmd.mode) == (-0.65, 0.45, 0.0, "escape")


def test_ends_on_timer_then_cools_down_and_retries_with_a_wider_target():
    escape = ParkingEscape(EscapeConfig(enabled=True), _planner(20))
    first = _idle(escape, WARMUP, 4000)
    assert first == list(range(FIRST_TRIGGER, FIRST_TRIGGER + 39))  # 40-tick timer, counted down from the trigger
    assert escape.cooldown_until == FIRST_TRIGGER + 39 + 2400 and escape.attempt == 1
    # No snapshots while escaping; old ones are pruned only when a new one is taken (4000: 2600 is oldest), so
    # the deadlock holds again on the first tick after the cooldown (4139).
    second_start = _idle(escape, 4000, 4140)[0]
    assert second_start == 4139 and escape.attempt == 2 and escape.active
    np.testing.assert_allclose(escape.adjust_target_points(second_start, np.zeros((2, 2)))[:, 1], [8.0, 8.0])


def test_ends_on_displacement_and_heading_change():
    moving = ParkingEscape(EscapeConfig(enabled=True), _planner())
    _idle(moving, WARMUP, FIRST_TRIGGER + 1)
    moving.update(FIRST_TRIGGER + 1, HERE + [5.9, 0.0], 0.0)
    assert moving.active  # 5.9 m is not more than 6.0
    moving.update(FIRST_TRIGGER + 2, HERE + [6.1, 0.0], 0.0)
    assert not moving.active and moving.cooldown_until == FIRST_TRIGGER + 2 + 2400

    turning = ParkingEscape(EscapeConfig(enabled=True), _planner())
    _idle(turning, WARMUP, FIRST_TRIGGER + 1, yaw=math.pi - 0.1)
    turning.update(FIRST_TRIGGER + 1, HERE, math.pi - 0.1 + math.radians(24.0))  # across +-pi: still 24 deg
    assert turning.active
    turning.update(FIRST_TRIGGER + 2, HERE, math.pi - 0.1 + math.radians(26.0))
    assert not turning.active


def test_no_trigger_when_the_ego_moved_within_the_window():
    escape = ParkingEscape(EscapeConfig(enabled=True), _planner())
    _idle(escape, WARMUP, 1000)
    assert _idle(escape, 1000, 2000, position=HERE + [5.0, 0.0]) == []  # 5.0 m is not less than 5.0
    # Once every kept snapshot is at the new spot, the deadlock is detected again.
    assert _idle(escape, 2000, 2600, position=HERE + [5.0, 0.0])[0] == 2500


def _controller(escape: ParkingEscape) -> DrivingController:
    safety = SafetyConfig(parked_start_guard=False)
    return DrivingController(ControlConfig(safety=safety, escape=escape.config), escape=escape)


def test_controller_order_stuck_counter_escape_else_creep_then_speed_cap():
    escape = ParkingEscape(EscapeConfig(enabled=True), _planner())
    ctrl = _controller(escape)
    for tick in range(WARMUP, FIRST_TRIGGER):
        escape.update(tick, HERE, 0.0)
        cmd = ctrl.step(tick, STRAIGHT, STOP, speed=0.0, position=HERE)
    assert cmd.mode == "creep"  # stuck for > 300 ticks without the parked-start guard
    escape.update(FIRST_TRIGGER, HERE, 0.0)
    cmd = ctrl.step(FIRST_TRIGGER, STRAIGHT, STOP, speed=0.0, position=HERE)
    assert (cmd.mode, cmd.steer, cmd.throttle, cmd.brake) == ("escape", -0.65, 0.45, 0.0)
    assert cmd.stuck_ticks == 0 and ctrl.force_move == 0  # the escape restarts the stuck counter, cancels creep
    escape.update(FIRST_TRIGGER + 1, HERE, 0.0)
    cmd = ctrl.step(FIRST_TRIGGER + 1, STRAIGHT, STOP, speed=36.0 / 3.6, position=HERE)
    assert (cmd.mode, cmd.throttle, cmd.brake) == ("speed_cap", 0.0, 1.0)  # the cap wins over the escape


def test_escape_config_validation():
    cfg = agent_config_from_dict({"control": {"escape": {"enabled": True, "steer": -0.5}}})
    assert cfg.control.escape.enabled and cfg.control.escape.steer == -0.5
    with pytest.raises(ConfigError) as info:
        agent_config_from_dict({"control": {"escape": {"keep_points": 1, "window_ticks": 0, "throttle": 2.0}}})
    text = str(info.value)
    assert "control.escape.keep_points: must be >= 2" in text and "control.escape.window_ticks: must be >= 1" in text
    assert "control.escape.throttle: must be in [0, 1], got 2.0" in text


def _agent(kit, tmp_path, escape: bool) -> tuple[AutoMoTAgent, object, list]:
    runtime = kit.FakeRuntime(cruise=0.0)  # the model keeps asking to stand still: a deadlock
    agent = AutoMoTAgent("localhost", 2000, runtime_factory=lambda cfg: runtime)
    agent.set_global_plan(*kit.plan([(50.0 * i, 0.0) for i in range(10)]))
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "agent.yaml"
    path.write_text(
        "image_size: [16, 8]\nrecorder: {video: false, ticks_jsonl: false}\nbench2drive: {enabled: false}\n"
        f"control: {{escape: {{enabled: {str(escape).lower()}}}}}\n"
    )
    agent.setup(str(path))
    return agent, runtime, agent.sensors()


def test_agent_escapes_a_deadlock_only_when_enabled(tmp_path, agent_kit):
    agent, runtime, specs = _agent(agent_kit, tmp_path, escape=True)
    assert isinstance(agent.escape_policy, ParkingEscape)
    controls = [agent.run_step(agent_kit.inputs(specs, t), 0.05 * t) for t in range(FIRST_TRIGGER + 45)]
    agent.destroy()
    assert not agent.controller.creep_enabled  # parked start: creep is off, so only the escape can help
    assert all(c.brake == 1.0 for c in controls[:FIRST_TRIGGER])
    # carla.VehicleControl (when the carla package is installed) stores float32: -0.65 reads back as -0.64999998.
    forced = [t for t, c in enumerate(controls) if (c.steer, c.throttle, c.brake) == pytest.approx((-0.65, 0.45, 0.0))]
    assert forced == list(range(FIRST_TRIGGER, FIRST_TRIGGER + 39))
    steps = {frame: state for state, _, frame in runtime.steps}
    submits = {frame: obs for obs, _, frame in runtime.submits}
    np.testing.assert_allclose(steps[FIRST_TRIGGER].target_points, [[3.0, 6.5], [6.0, 6.5]])
    np.testing.assert_allclose(submits[FIRST_TRIGGER].target_points, [[3.0, 6.5], [6.0, 6.5]])  # prompt too
    assert len(agent.planner) == 5
    # After the escape the model sees the route again, from the first point kept after the pop (300 m).
    np.testing.assert_allclose(steps[FIRST_TRIGGER + 41].target_points, [[300.0, 0.0], [350.0, 0.0]], atol=0.05)

    off, runtime_off, specs_off = _agent(agent_kit, tmp_path / "off", escape=False)
    assert off.escape_policy is None
    controls = [off.run_step(agent_kit.inputs(specs_off, t), 0.05 * t) for t in range(FIRST_TRIGGER + 5)]
    off.destroy()
    assert all(c.brake == 1.0 for c in controls) and len(off.planner) == 10
