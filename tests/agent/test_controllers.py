"""Controllers and safety heuristics (no model, no simulator)."""

from __future__ import annotations

import numpy as np
import pytest

from automot.agent.control import (
    ControlCommand,
    ControlConfig,
    DrivingController,
    LateralConfig,
    LateralController,
    LongitudinalConfig,
    LongitudinalController,
    SafetyConfig,
    WindowPID,
    resample_path,
)

STRAIGHT = np.stack([np.arange(1, 21, dtype=float), np.zeros(20)], axis=1)


def _arc(curvature: float) -> np.ndarray:
    """20 points, 1 m apart, on a circle turning right (positive y) for positive curvature."""
    s = np.arange(1, 21, dtype=float)
    if curvature == 0:
        return STRAIGHT.copy()
    return np.stack([np.sin(curvature * s) / curvature, (1 - np.cos(curvature * s)) / curvature], axis=1)


def _waypoints(speed: float) -> np.ndarray:
    """Six waypoints 0.5 s apart for a constant ``speed``."""
    return np.stack([np.arange(1, 7) * 0.5 * speed, np.zeros(6)], axis=1)


def _controller(**safety) -> DrivingController:
    return DrivingController(ControlConfig(safety=SafetyConfig(warmup_ticks=0, **safety)))


def test_window_pid_integral_is_window_mean():
    pid = WindowPID(kp=0.0, ki=1.0, kd=0.0, window=4)
    assert pid.step(4.0) == pytest.approx(1.0)  # window [0, 0, 0, 4]
    assert pid.step(4.0) == pytest.approx(2.0)
    pid_d = WindowPID(kp=0.0, ki=0.0, kd=1.0, window=4)
    pid_d.step(1.0)
    assert pid_d.step(3.0) == pytest.approx(2.0)


def test_lateral_pid_window_starts_empty_like_the_released_steering_pid():
    """PDM-Lite's LateralPIDController (used by the released agent) has no zero padding: on the first tick the
    integral is the error itself and the derivative 0; its window holds the last 6 errors (docs/released-agent.md §4).

    Hand calculation with the released gains (k_p 3.118, k_d 1.3782508892, k_i 0.6406067986) on a right arc of radius
    10 m at 4 m/s: 14.4 km/h gives 0.9755 * 14.4 + 1.195 = 15.2 < 24, so the lookahead is sample 24, i.e. 2.5 m of
    path. The chord to a point s metres along a circle of radius R points s / (2R) off the heading: 0.125 rad
    (0.12504 with the chord-length arc and the 1e-4 tie-break), so e = 0.12504 / (pi / 2) = 0.079603.
    """
    lat = LateralController(LateralConfig())
    path = _arc(0.1)
    steer, lookahead = lat.step(path, speed=4.0)
    assert lookahead == pytest.approx(20.0 * np.sin(0.125), abs=2e-3)  # the chord: 2 R sin(s / 2R) = 2.4935 m
    # (3.118 + 0.6406) * 0.079603 = 0.29919. A zero-filled window would give 0.257, a derivative against 0 0.409.
    assert steer == 0.299
    for _ in range(6):
        assert lat.step(path, speed=4.0)[0] == 0.299  # constant error: derivative 0, window mean e
    # Seven arc ticks, then a straight path (e = 0): window [e x 5, 0], mean 5e/6, derivative -e:
    # -1.37825 * 0.079603 + 0.64061 * 5 / 6 * 0.079603 = -0.06722 (a window of 8 or more: mean 7e/8 -> -0.065).
    steer, _ = lat.step(STRAIGHT, speed=4.0)
    assert steer == -0.067


def test_speed_pid_window_starts_with_20_zeros():
    """The released speed PIDController starts with 20 zero errors (docs/released-agent.md §4): k_p 1.75, k_i 1.0,
    k_d 2.0.

    Waypoints 3 m apart (6 m/s) at 5.8 m/s: e = 0.2 every tick. Tick 1: 1.75 * 0.2 + 0.2 / 20 + 2.0 * (0.2 - 0)
    = 0.76; tick 2: 0.35 + 0.4 / 20 + 0 = 0.37; tick 3: 0.35 + 0.6 / 20 = 0.38 (an unpadded window: 0.55, 0.55).
    """
    lon = LongitudinalController(LongitudinalConfig())
    throttles = [lon.step(_waypoints(6.0), speed=5.8)[0] for _ in range(3)]
    assert throttles == pytest.approx([0.76, 0.37, 0.38], abs=1e-9)


def test_resample_path_spacing_and_degenerate_path():
    samples = resample_path(STRAIGHT, 0.1)
    assert len(samples) == 200  # 0.1 .. 20.0 m (arc length slightly above 20 from the tie-break offset)
    np.testing.assert_allclose(np.diff(samples[:, 0]), 0.1, atol=1e-3)
    still = resample_path(np.zeros((20, 2)), 0.1)  # standstill path: no NaN, one point
    assert still.shape == (1, 2) and np.all(np.isfinite(still))


def test_straight_path_gives_zero_steer():
    lat = LateralController(LateralConfig())
    for _ in range(5):
        steer, lookahead = lat.step(STRAIGHT, speed=5.0)
    assert steer == pytest.approx(0.0, abs=1e-3)
    assert lookahead == pytest.approx(2.5, abs=0.01)  # 18 km/h is below the 24-sample minimum: sample 25 = 2.5 m
    # 36 km/h: 0.9755321902 * 36 + 1.195 = 36.31 -> sample 36 (the 37th, 0.1 m apart) = 3.7 m ahead.
    _, lookahead = lat.step(STRAIGHT, speed=10.0)
    assert lookahead == pytest.approx(3.7, abs=0.01)


@pytest.mark.parametrize("curvature", [0.02, 0.05, 0.1])
def test_right_curve_steers_right_and_left_curve_left(curvature):
    right, _ = LateralController(LateralConfig()).step(_arc(curvature), speed=4.0)
    left, _ = LateralController(LateralConfig()).step(_arc(-curvature), speed=4.0)
    assert right > 0.01 and left < -0.01
    assert right == pytest.approx(-left, abs=1e-3)


def test_lookahead_grows_with_speed_and_is_clamped():
    lat = LateralController(LateralConfig())
    assert lat.lookahead_index(0.0, 1000) == 24
    assert lat.lookahead_index(10.0, 1000) == 36  # 0.9755321902 * 36 km/h + 1.195 = 36.31
    assert lat.lookahead_index(100.0, 1000) == 105
    assert lat.lookahead_index(100.0, 50) == 49  # never past the end of the path


def test_far_apart_waypoints_give_throttle_and_no_brake():
    lon = LongitudinalController(LongitudinalConfig())
    throttle, brake, desired = lon.step(_waypoints(6.0), speed=2.0)
    assert desired == pytest.approx(6.0)
    assert throttle > 0.5 and not brake


def test_standstill_waypoints_brake():
    lon = LongitudinalController(LongitudinalConfig())
    throttle, brake, desired = lon.step(np.zeros((6, 2)), speed=3.0)
    assert brake and throttle == 0.0 and desired == 0.0
    throttle, brake, _ = lon.step(_waypoints(0.3), speed=0.0)  # below brake_speed 0.4 m/s
    assert brake and throttle == 0.0


def test_overspeed_ratio_brakes():
    lon = LongitudinalController(LongitudinalConfig())
    _, brake, _ = lon.step(_waypoints(5.0), speed=5.6)  # 5.6 / 5 = 1.12 > 1.1
    assert brake
    _, brake, _ = lon.step(_waypoints(5.0), speed=5.4)
    assert not brake


def test_speed_cap_brakes_above_35_kmh():
    ctrl = _controller()
    cmd = ctrl.step(0, STRAIGHT, _waypoints(15.0), speed=36.0 / 3.6)
    assert (cmd.throttle, cmd.brake, cmd.mode) == (0.0, 1.0, "speed_cap")
    cmd = ctrl.step(1, STRAIGHT, _waypoints(15.0), speed=30.0 / 3.6)
    assert cmd.throttle > 0 and cmd.brake == 0.0


def test_warmup_is_full_brake_for_31_ticks():
    ctrl = DrivingController(ControlConfig())
    cmds = [ctrl.step(t, STRAIGHT, _waypoints(8.0), speed=0.0) for t in range(33)]
    assert all(c.brake == 1.0 and c.throttle == 0.0 and c.steer == 0.0 and c.mode == "warmup" for c in cmds[:31])
    assert cmds[31].mode == "drive" and cmds[31].throttle > 0
    assert ctrl.stuck_counter == 2  # warm-up ticks do not count as being stuck


def test_stuck_creep_after_300_stopped_ticks():
    ctrl = _controller(parked_start_guard=False)
    stop = np.zeros((6, 2))
    modes = [ctrl.step(t, STRAIGHT, stop, speed=0.0).mode for t in range(300)]
    assert set(modes) == {"brake"}
    cmd = ctrl.step(300, STRAIGHT, stop, speed=0.0)  # counter 301 > 300
    assert cmd.mode == "creep" and cmd.throttle >= 0.4 and cmd.brake == 0.0
    # Once moving (counter reset) the creep still runs out its 14 ticks, then the model brakes again.
    tail = [ctrl.step(301 + i, STRAIGHT, stop, speed=1.0) for i in range(15)]
    assert [c.mode for c in tail[:13]] == ["creep"] * 13
    assert tail[13].mode == "brake" and ctrl.stuck_counter == 0


def test_parked_start_guard_disables_creep():
    ctrl = _controller(parked_start_ticks=200)
    stop, here = np.zeros((6, 2)), np.array([5.0, 5.0])
    cmds = [ctrl.step(t, STRAIGHT, stop, speed=0.0, position=here) for t in range(400)]
    assert not ctrl.creep_enabled
    assert all(c.mode == "brake" for c in cmds)

    moved = _controller(parked_start_ticks=200)
    for t in range(50):
        moved.step(t, STRAIGHT, stop, speed=0.0, position=np.array([0.0, 0.0]))
    for t in range(50, 400):  # drove 10 m early on, then got stuck
        cmd = moved.step(t, STRAIGHT, stop, speed=0.0, position=np.array([10.0, 0.0]))
    assert moved.creep_enabled and cmd.mode == "creep"


def test_escape_hook_overrides_creep_but_not_speed_cap():
    class Escape:
        def adjust_target_points(self, tick, target_points):
            return target_points

        def override(self, tick, position, speed):
            return ControlCommand(steer=-0.65, throttle=0.45, brake=0.0, mode="escape")

    ctrl = DrivingController(ControlConfig(safety=SafetyConfig(warmup_ticks=0)), escape=Escape())
    cmd = ctrl.step(0, STRAIGHT, np.zeros((6, 2)), speed=0.0)
    assert (cmd.steer, cmd.throttle, cmd.brake, cmd.mode) == (-0.65, 0.45, 0.0, "escape")
    cmd = ctrl.step(1, STRAIGHT, np.zeros((6, 2)), speed=12.0)
    assert cmd.mode == "speed_cap" and cmd.brake == 1.0


def test_hold_does_not_touch_stuck_counter():
    ctrl = _controller()
    for t in range(10):
        ctrl.step(t, STRAIGHT, np.zeros((6, 2)), speed=0.0)
    cmd = ctrl.hold("safe_stop")
    assert (cmd.brake, cmd.throttle, cmd.steer) == (1.0, 0.0, 0.0) and ctrl.stuck_counter == 10
