"""automot.geometry: the two wrap intervals at their boundaries and as properties, and the ego frame (x forward,
y right) of the world <-> ego transforms. The GNSS and compass conversions built on them (agent/geometry.py):
tests/agent/test_gnss_and_compass.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

from automot.geometry import (
    ego_to_world,
    heading_vector,
    rotation_2d,
    world_to_ego,
    wrap_angle,
    wrap_angle_left_closed,
)

PI = math.pi
TINY = 1e-12

# (input, wrap_angle -> (-pi, pi], wrap_angle_left_closed -> [-pi, pi)); the boundary values are exact.
BOUNDARIES = [
    (PI, PI, -PI),
    (-PI, PI, -PI),
    (3 * PI, PI, -PI),
    (-3 * PI, PI, -PI),
    (0.0, 0.0, 0.0),
    (-0.0, 0.0, 0.0),
    (2 * PI, 0.0, 0.0),
    (-2 * PI, 0.0, 0.0),
]

# Just inside and just outside each end: (input, expected for both functions, approximately).
OFFSETS = [
    (PI - TINY, PI - TINY),
    (PI + TINY, -PI + TINY),
    (-PI + TINY, -PI + TINY),
    (-PI - TINY, PI - TINY),
    (TINY, TINY),
    (-TINY, -TINY),
]


def _many_angles() -> np.ndarray:
    rng = np.random.default_rng(0)
    k = np.arange(-6, 7)
    near_boundaries = np.concatenate([k * PI + d for d in (-1e-9, -TINY, 0.0, TINY, 1e-9)])
    return np.concatenate([rng.uniform(-50.0, 50.0, 4000), rng.normal(0.0, 1.0, 1000), near_boundaries])


@pytest.mark.parametrize("angle, closed_right, closed_left", BOUNDARIES)
def test_wrap_boundaries(angle, closed_right, closed_left):
    assert wrap_angle(angle) == closed_right
    assert wrap_angle_left_closed(angle) == closed_left
    assert wrap_angle(np.array([angle]))[0] == closed_right  # the vectorised path agrees


@pytest.mark.parametrize("angle, expected", OFFSETS)
def test_wrap_tiny_offsets_around_the_ends(angle, expected):
    for fn in (wrap_angle, wrap_angle_left_closed):
        assert fn(angle) == pytest.approx(expected, abs=1e-15)


def _check_interval_and_congruence(angles: np.ndarray, wrapped: np.ndarray, left_closed: bool) -> None:
    if left_closed:
        assert np.all((wrapped >= -PI) & (wrapped < PI))
    else:
        assert np.all((wrapped > -PI) & (wrapped <= PI))
    turns = (angles - wrapped) / (2 * PI)  # a whole number of turns apart, up to the float error of |angle|
    np.testing.assert_allclose(turns, np.round(turns), rtol=0, atol=1e-12 * (1 + np.abs(angles).max()))


def test_wrap_angle_interval_and_congruence_property():
    angles = _many_angles()
    scalar = np.array([wrap_angle(float(a)) for a in angles])
    _check_interval_and_congruence(angles, scalar, left_closed=False)
    vector = wrap_angle(angles)
    assert isinstance(vector, np.ndarray) and vector.shape == angles.shape
    np.testing.assert_array_equal(vector, scalar)  # bit-identical, element by element
    grid = angles[:4000].reshape(40, 100)
    np.testing.assert_array_equal(wrap_angle(grid), scalar[:4000].reshape(40, 100))  # shape kept


def test_wrap_angle_left_closed_interval_and_congruence_property():
    angles = _many_angles()
    wrapped = np.array([wrap_angle_left_closed(float(a)) for a in angles])
    _check_interval_and_congruence(angles, wrapped, left_closed=True)
    # The two intervals differ only where wrap_angle gives exactly +pi.
    right = np.array([wrap_angle(float(a)) for a in angles])
    differ = wrapped != right
    assert np.all(right[differ] == PI) and np.all(wrapped[differ] == -PI)


def test_wrap_angle_is_the_released_arithmetic_bit_for_bit():
    def released_normalize_angle(x):  # automot_utils.normalize_angle, written out as the original does it
        x = x % (2 * np.pi)
        if x > np.pi:
            x -= 2 * np.pi
        return x

    for a in _many_angles():
        assert wrap_angle(float(a)) == released_normalize_angle(float(a))


def test_wrap_angle_types_and_nan():
    assert type(wrap_angle(1.0)) is float and type(wrap_angle(np.float64(7.0))) is float
    assert type(wrap_angle(np.array(7.0))) is float  # 0-d arrays count as scalars
    assert math.isnan(wrap_angle(math.nan))
    assert np.isnan(wrap_angle(np.array([math.nan, 0.0])))[0]


def test_world_to_ego_right_is_positive_y():
    ego, yaw = np.array([10.0, 5.0]), PI / 2  # facing +y (south)
    pts = np.array([[10.0, 15.0], [0.0, 5.0], [20.0, 5.0]])  # ahead, right (west), left (east)
    local = world_to_ego(pts, ego, yaw)
    np.testing.assert_allclose(local, [[10.0, 0.0], [0.0, 10.0], [0.0, -10.0]], atol=1e-9)
    np.testing.assert_allclose(ego_to_world(local, ego, yaw), pts, atol=1e-9)


def test_world_to_ego_forward_right_and_round_trip_at_any_yaw():
    ego, yaw = np.array([10.0, -4.0]), 0.7
    ahead = ego + 5.0 * heading_vector(yaw)
    np.testing.assert_allclose(world_to_ego(ahead, ego, yaw), [[5.0, 0.0]], atol=1e-12)
    right = ego + 2.0 * heading_vector(yaw + PI / 2)  # +90 degrees of yaw is the vehicle's right
    np.testing.assert_allclose(world_to_ego(right, ego, yaw), [[0.0, 2.0]], atol=1e-12)
    rng = np.random.default_rng(1)
    pts = rng.uniform(-100.0, 100.0, size=(50, 2))
    for yaw in (-3 * PI, -PI, -0.3, 0.0, 1.2, PI, 5.0):
        np.testing.assert_allclose(ego_to_world(world_to_ego(pts, ego, yaw), ego, yaw), pts, atol=1e-9)
        np.testing.assert_allclose(world_to_ego(ego_to_world(pts, ego, yaw), ego, yaw), pts, atol=1e-9)
    assert world_to_ego([1.0, 2.0], ego, yaw).shape == (1, 2)  # a single point comes back as (1, 2)


def test_rotation_2d_columns_are_the_ego_axes():
    yaw = 0.4
    rot = rotation_2d(yaw)
    np.testing.assert_allclose(rot.T @ rot, np.eye(2), atol=1e-15)
    np.testing.assert_allclose(rot[:, 0], heading_vector(yaw))  # ego x (forward)
    np.testing.assert_allclose(rot[:, 1], heading_vector(yaw + PI / 2), atol=1e-15)  # ego y (right)
    assert np.linalg.det(rot) == pytest.approx(1.0)
