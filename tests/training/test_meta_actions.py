"""Meta-action derivation from future trajectories, and the path helpers behind the targets."""

from __future__ import annotations

import numpy as np
import pytest

from automot.training.data.geometry import build_path, resample_polyline
from automot.training.data.meta_actions import MetaActionThresholds, derive_meta_actions

RATE = 10.0
T = np.arange(0, 4.0 + 1e-9, 1 / RATE)


def _integrate(speed: np.ndarray, yaw_rate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    yaw = np.concatenate([[0.0], np.cumsum(yaw_rate[:-1] / RATE)])
    step = speed[:-1, None] / RATE * np.stack([np.cos(yaw[:-1]), np.sin(yaw[:-1])], axis=1)
    xy = np.concatenate([np.zeros((1, 2)), np.cumsum(step, axis=0)])
    return xy, yaw


def _decide(speed, yaw_rate=None, **kw):
    yaw_rate = np.zeros_like(T) if yaw_rate is None else yaw_rate
    xy, yaw = _integrate(speed, yaw_rate)
    return derive_meta_actions(T, xy, yaw, speed, **kw)


def test_longitudinal_actions():
    assert _decide(np.full_like(T, 8.0)) == ["keep", "keep", "keep"]
    assert _decide(2.0 + 2.0 * T) == ["accelerate"] * 3
    braking = np.clip(8.0 - 3.0 * T, 0.0, None)  # halts at 2.67 s
    assert _decide(braking) == ["decelerate", "decelerate", "stop"]  # stop: below 0.5 m/s one window later
    assert _decide(np.zeros_like(T)) == ["stop", "stop", "stop"]


def test_turns_follow_the_y_right_convention():
    speed = np.full_like(T, 5.0)
    left = _decide(speed, np.full_like(T, -0.5))  # yaw decreasing: towards -y (left)
    right = _decide(speed, np.full_like(T, 0.5))
    assert left == ["turn left"] * 3 and right == ["turn right"] * 3
    xy, _ = _integrate(speed, np.full_like(T, -0.5))
    assert xy[-1, 1] < 0  # and the vehicle really went left


def test_lane_change_from_lateral_offset_but_not_from_a_steady_curve():
    speed = np.full_like(T, 15.0)
    # S-shaped 3.5 m shift to the left between 0 and 2 s: heading out and back in.
    lateral = -3.5 * np.clip(T / 2.0, 0, 1) ** 2 * (3 - 2 * np.clip(T / 2.0, 0, 1))
    xy = np.stack([15.0 * T, lateral], axis=1)
    yaw = np.arctan2(np.gradient(lateral, T), 15.0)
    assert derive_meta_actions(T, xy, yaw, speed)[0] == "change lane left"
    assert derive_meta_actions(T, xy * [1, -1], -yaw, speed)[0] == "change lane right"
    # A 300 m radius highway curve drifts 1.5 m sideways in 2 s but is not a lane change.
    curve = _decide(speed, np.full_like(T, 15.0 / 300.0))
    assert curve == ["keep", "keep", "keep"]


def test_lane_ids_override_geometry():
    speed = np.full_like(T, 10.0)
    lanes = np.where(T > 1.5, 2, 1)
    xy, yaw = _integrate(speed, np.zeros_like(T))
    assert derive_meta_actions(T, xy, yaw, speed, lane_ids=lanes) == ["change lane right"] * 2 + ["keep"]


def test_thresholds_are_configurable_and_short_recordings_repeat():
    speed = 5.0 + 0.5 * T
    assert _decide(speed) == ["keep"] * 3
    assert _decide(speed, thresholds=MetaActionThresholds(speed_delta=0.25)) == ["accelerate"] * 3
    short = T[T <= 1.2]
    xy, yaw = _integrate(np.full_like(short, 0.0), np.zeros_like(short))
    assert derive_meta_actions(short, xy, yaw, np.zeros_like(short)) == ["stop", "stop", "stop"]


def test_path_geometry_helpers():  # world <-> ego transforms: tests/core/test_geometry.py
    res = resample_polyline(np.array([[0.0, 0.0], [3.0, 0.0], [3.0, 4.0]]), 1.0, 10)
    np.testing.assert_allclose(np.linalg.norm(np.diff(res, axis=0), axis=1)[:6], 1.0, atol=1e-9)
    np.testing.assert_allclose(res[-1], [3.0, 7.0])  # extended along the last segment past the end
    # Standing still: the path is built from the target points alone.
    path = build_path(np.zeros((5, 2)), np.array([[0.0, -10.0], [0.0, -30.0]]), 1.0, 20)
    np.testing.assert_allclose(path[:, 0], 0.0, atol=1e-9)
    np.testing.assert_allclose(path[:, 1], -np.arange(1, 21), atol=1e-9)
    # Target points behind the driven future do not fold the path back.
    driven = np.stack([np.arange(1, 31.0), np.zeros(30)], axis=1)
    path = build_path(driven, np.array([[15.0, 0.0], [25.0, 0.0]]), 1.0, 20)
    assert path[-1] == pytest.approx([20.0, 0.0])
