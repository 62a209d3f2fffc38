"""GNSS <-> CARLA metres and compass -> yaw (agent/geometry.py): round trips, CARLA's axes, the georeference
solve and the compass guard. Angle wrapping and the ego transform themselves: tests/core/test_geometry.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

from automot.agent.geometry import compass_to_yaw, gps_to_local, local_to_gps, solve_georeference

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
