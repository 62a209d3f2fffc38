"""The ``automot-released`` profile behaves like the released agent (OscarHuangWind/AutoMoT 278fa5a:
``leaderboard/team_code/mot_b2d_agent.py``, ``nav_planner.py``, ``Automot/evaluation/inference.py``).

The tests pin behaviour that matched and had no end-to-end test, and the divergences found by comparing the two and
since fixed (odd-tick action positions, escape resets, deadlock snapshots, escape length, UKF first tick,
lane-change reach).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from automot.agent.automot_agent import AutoMoTAgent
from automot.agent.config import load_agent_config
from automot.agent.control import ControlConfig, DrivingController, EscapeConfig, LateralConfig, LateralController
from automot.agent.escape import ParkingEscape
from automot.agent.geometry import compass_to_yaw
from automot.agent.route_planner import RoutePlanner
from automot.agent.state_estimation import UkfConfig, UkfEstimator, state_residual

PROFILE = Path(__file__).resolve().parents[2] / "leaderboard_configs" / "automot_released.yaml"
HERE = np.array([10.0, 20.0])
STRAIGHT = np.stack([np.arange(1, 21, dtype=float), np.zeros(20)], axis=1)
STOP = np.zeros((6, 2))


# ---------------------------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def released_tiny():
    from automot.model.released.loader import ReleasedParts
    from automot.model.released.synthetic import build_tiny_released

    model, bev = build_tiny_released(seed=5)
    model.released = ReleasedParts(bev, bev.cfg, "synthetic")
    return model


class _Spy:
    """Wraps the runtime's refresh and fast engine to record what each tick used."""

    def __init__(self, rt) -> None:
        self.refreshes: list[tuple[int, list[int], np.ndarray]] = []
        self.positions: list[int] = []
        refresh, engine = rt.core.refresh, rt.core.engine

        def spy_refresh(obs, sim_time, frame):
            frames = [int(np.asarray(im)[0, 0, 0]) for im in obs.images]
            self.refreshes.append((frame, frames, np.asarray(obs.target_points).copy()))
            return refresh(obs, sim_time, frame)

        class Engine:
            def __getattr__(_, name):
                return getattr(engine, name)

            def __call__(_, keys, values, pad_mask, next_position, *rest):
                self.positions.append(int(next_position.reshape(-1)[0]))
                return engine(keys, values, pad_mask, next_position, *rest)

        rt.core.refresh = spy_refresh
        rt.core.engine = Engine()


def _released_profile_agent(kit, tmp_path, model) -> tuple[AutoMoTAgent, dict]:
    """The shipped automot_released.yaml, with only the model, camera size and output files changed."""
    from automot.runtime import build_runtime

    prof = yaml.safe_load(PROFILE.read_text())
    prof["model"].update(checkpoint=None, device="cpu", dtype="float32")
    prof["image_size"] = [128, 64]  # the tiny BEV config crops 128x64
    prof["recorder"] = {"video": False, "ticks_jsonl": False}
    prof["bench2drive"]["enabled"] = False
    path = tmp_path / "released.yaml"
    path.write_text(yaml.safe_dump(prof))
    holder: dict = {}

    def factory(cfg):
        rt = build_runtime(model, config=cfg.runtime)  # the profile's runtime section as is
        holder["spy"] = _Spy(rt)
        return rt

    agent = AutoMoTAgent(runtime_factory=factory)
    agent.set_global_plan(*kit.creeping_plan())
    agent.setup(f"{path}+audit")
    return agent, holder


# ---------------------------------------------------------------------------------------------- matches


def test_released_profile_cadence_history_and_warmup_end_to_end(tmp_path, released_tiny, scene_kit):
    """docs/released-checkpoint.md §3.1, docs/released-agent.md §5: ticks 0-30 full brake without the model;
    prefill at 31 (no cache yet), then on even ticks; odd ticks reuse the previous prefix (age 1, old prompt);
    images are t-15, t-10, t-5, t, oldest first."""
    agent, holder = _released_profile_agent(scene_kit, tmp_path, released_tiny)
    try:
        specs = agent.sensors()
        ages = {}
        for tick in range(37):
            control = agent.run_step(scene_kit.creeping_inputs(specs, tick, tick_camera=True), 0.05 * tick)
            assert agent.last_record.error is None, agent.last_record.error
            if tick < 31:
                assert (control.throttle, control.steer, control.brake) == (0.0, 0.0, 1.0)
                assert agent.last_output is None
            else:
                assert not agent.last_output.safe_stop
                ages[tick] = (agent.last_output.snapshot_frame, agent.last_output.age_ticks)
        spy = holder["spy"]
        assert [f for f, _, _ in spy.refreshes] == [31, 32, 34, 36]
        assert ages == {31: (31, 0), 32: (32, 0), 33: (32, 1), 34: (34, 0), 35: (34, 1), 36: (36, 0)}
        for frame, frames, _ in spy.refreshes:
            assert frames == [frame - 15, frame - 10, frame - 5, frame]
        assert len(spy.positions) == 6  # the action expert ran on every driving tick
        assert isinstance(agent.escape_policy, ParkingEscape)
        assert agent.config.state_estimator == "ukf"
    finally:
        agent.destroy()


def test_route_planner_never_pops_below_two_and_escape_pop_keeps_three():
    planner = RoutePlanner()
    planner.set_route([(np.array([x, 0.0]), 4) for x in (0.0, 5.0, 7.0)])
    planner.update(np.array([7.0, 0.0]))  # every point is in reach: only one may go
    assert len(planner) == 2
    tp = planner.target_points(np.array([7.0, 0.0]), 0.0)
    assert np.allclose(tp.target, [7.0, 0.0]) and np.allclose(tp.next_target, [12.0, 0.0])  # heading fallback
    planner.set_route([(np.array([50.0 * i, 0.0]), 4) for i in range(6)])
    assert planner.pop_points(5, 3) == 3 and len(planner) == 3  # min(5, len - 3)


# ---------------------------------------------------------------------------------------------- divergences


def test_reused_prefix_shifts_action_positions_like_released(tmp_path, released_tiny, scene_kit):
    agent, holder = _released_profile_agent(scene_kit, tmp_path, released_tiny)
    try:
        specs = agent.sensors()
        for tick in range(34):
            agent.run_step(scene_kit.creeping_inputs(specs, tick, tick_camera=True), 0.05 * tick)
        n_action = released_tiny.action_groups.shape[0]
        pos = holder["spy"].positions  # ticks 31, 32, 33
        assert pos[2] == pos[1] + n_action
    finally:
        agent.destroy()


def test_escape_resets_the_stuck_counter_and_creep():
    """Released: stuck_detector and force_move are zeroed when an escape starts and on every escape tick."""
    escape = ParkingEscape(EscapeConfig(enabled=True), None)
    ctl = DrivingController(ControlConfig(), escape=escape)
    modes = {}
    for tick in range(31, 1800):
        pos = np.array([min(tick - 31, 100) * 0.1, 0.0])  # moves 10 m, so creep stays enabled, then stuck
        escape.update(tick, pos, 0.0)
        cmd = ctl.step(tick, STRAIGHT, STOP, 0.0, pos)
        modes[tick] = (cmd.mode, ctl.stuck_counter)
    first_after = min(t for t in modes if t > 1700 and modes[t][0] != "escape")
    assert modes[1700] == ("escape", 0)
    assert modes[first_after][0] != "creep"  # the released counter restarts from 0 after an escape


def test_second_escape_starts_when_the_cooldown_ends():
    """Released prunes snapshots only when taking one, so the deadlock is re-checked on every tick."""
    escape = ParkingEscape(EscapeConfig(enabled=True), None)
    starts, ended, was = [], None, False
    for tick in range(31, 4400):
        escape.update(tick, HERE, 0.0)
        if escape.active and not was:
            starts.append(tick)
        if was and not escape.active and ended is None:
            ended = tick
        was = escape.active
    assert starts[0] == 1700
    assert starts[1] == ended + 2400


def test_escape_forces_control_for_39_ticks():
    """Released decrements the 40-tick timer on the trigger tick already."""
    escape = ParkingEscape(EscapeConfig(enabled=True), None)
    active = []
    for tick in range(31, 1800):
        escape.update(tick, HERE, 0.0)
        if escape.override(tick, HERE, 0.0) is not None:
            active.append(tick)
    assert active == list(range(1700, 1739))


def test_ukf_first_tick_also_predicts_and_updates():
    """Released initialises the filter, then predicts and updates on the same tick (P shrinks)."""
    ukf = UkfEstimator(UkfConfig())
    ukf.update(np.array([1.0, 2.0]), 0.3, 0.0, (0.0, 0.0, 0.0))
    assert ukf.filter.P[0, 0] < 0.3  # released: 0.5 + Q then update with R 0.5 -> ~0.25


def test_lane_change_reach_needs_the_released_conditions():
    """nav_planner.py: 2 x 7.5 m reach only if the next segment is < 7.5 m or the next point is LANEFOLLOW."""
    planner = RoutePlanner()
    # (12, 0) is a lane change followed 50 m later by a LEFT turn point: released reach is 7.5 m, not 15 m.
    planner.set_route(
        [
            (np.array([-20.0, 0.0]), 4),
            (np.array([12.0, 0.0]), 5),
            (np.array([62.0, 0.0]), 1),
            (np.array([112.0, 0.0]), 4),
        ]
    )
    planner.update(np.array([0.0, 0.0]))
    assert len(planner) == 4


def test_lane_change_reach_when_the_next_point_is_close_or_lane_follow():
    for next_x, next_option in ((17.0, 1), (62.0, 4)):  # a 5 m segment after the point / LANEFOLLOW after it
        planner = RoutePlanner()
        xs_options = [(-20.0, 4), (12.0, 5), (next_x, next_option), (200.0, 4)]
        planner.set_route([(np.array([x, 0.0]), option) for x, option in xs_options])
        planner.update(np.array([0.0, 0.0]))
        assert planner.route[0][1] == 5  # popped up to the lane-change point, 12 m away


def test_released_compass_nan_is_north(tmp_path, agent_kit):
    """mot_b2d_agent.py tick(): a NaN compass becomes 0 (north) before the -90 deg shift, not the last value."""
    assert load_agent_config(PROFILE).compass_nan == "zero"
    agent, _, specs = agent_kit.make_agent(tmp_path, compass_nan="zero")
    for t in range(3):
        agent.run_step(agent_kit.inputs(specs, t), 0.05 * t)  # facing east
    agent.run_step(agent_kit.inputs(specs, 3, compass=float("nan")), 0.15)
    assert agent.last_record.ego_pose[2] == pytest.approx(-math.pi / 2)  # north, not the last valid east
    agent.destroy()


def test_yaw_wraps_to_minus_pi_exclusive_plus_pi_inclusive_as_released():
    # yaw = compass - 90 deg, wrapped to (-pi, pi]: north (0) -> -pi/2, east (pi/2) -> 0, south (pi) -> pi/2.
    assert compass_to_yaw(0.0) == -math.pi / 2 and compass_to_yaw(math.pi / 2) == 0.0
    assert compass_to_yaw(math.pi) == pytest.approx(math.pi / 2, abs=1e-15)
    assert compass_to_yaw(1.5 * math.pi) == math.pi  # released normalize_angle keeps +pi (west)
    assert compass_to_yaw(-math.pi / 2) == math.pi  # -pi is not in the range: it becomes +pi
    assert compass_to_yaw(-0.25) == pytest.approx(-1.8207963267948966, abs=1e-15)  # -0.25 - 1.5707963267948966
    assert compass_to_yaw(2 * math.pi) == pytest.approx(-math.pi / 2, abs=1e-15)  # a full turn is north again
    residual = state_residual(np.array([0.0, 0.0, math.pi / 2, 0.0]), np.array([0.0, 0.0, -math.pi / 2, 0.0]))
    assert residual[2] == math.pi


@pytest.mark.parametrize(("kp", "expected"), [(0.001, 0.0), (-0.001, 0.0), (0.005, 0.002), (0.003, 0.002)])
def test_steer_rounds_half_to_even_like_numpy(kp, expected):
    """control_pid rounds a NumPy float: np.round (half-even on steer * 1000), not Python's decimal round.

    A path along the diagonal y = x puts the lookahead point at exactly 45 deg: e = 0.5 (a 90 deg error is 1). With
    only k_p, the raw steer is k_p / 2: 0.0005, -0.0005, 0.0025, 0.0015, the ties of the third decimal. Python's
    round() would give 0.001, -0.001, 0.003 (0.0025 is just above it as a float) and 0.002.
    """
    diagonal = np.stack([np.arange(1, 21, dtype=float)] * 2, axis=1)
    lateral = LateralController(LateralConfig(kp=kp, kd=0.0, ki=0.0))
    steer, _ = lateral.step(diagonal, 0.0)
    assert steer == expected
