"""Embedded world: route files, route paths, coordinate mapping, GNSS and the global plan."""

from __future__ import annotations

import math

import numpy as np
import pytest
from highway_env.vehicle.kinematics import Vehicle

from automot.agent.contract import RoadOption
from automot.world.geo import build_global_plan, carla_to_hw, gps_to_location, hw_to_carla, location_to_gps
from automot.world.route_path import RoutePath
from automot.world.routes import UnknownRouteError, list_routes, load_route
from automot.world.sim import EmbeddedWorld

ROUTES = ("highway_lane_keep", "merge", "intersection", "roundabout")


def test_list_routes_has_the_named_scenarios():
    assert set(ROUTES) <= set(list_routes())


@pytest.mark.parametrize("name", ROUTES)
def test_load_route_fields(name):
    spec = load_route(name)
    assert spec.name == name
    assert spec.sim_rate_hz == 20 and spec.dt == pytest.approx(0.05)
    assert spec.tick_limit > 0 and spec.target_speed > 0
    assert (spec.lat_ref, spec.lon_ref) == (42.0, 2.0)
    assert spec.env_id.split("-")[0] in {"highway", "merge", "intersection", "roundabout"}


def test_unknown_route_lists_known_names():
    with pytest.raises(UnknownRouteError) as info:
        load_route("no_such_route")
    message = str(info.value)
    assert "no_such_route" in message and all(name in message for name in ROUTES)


def test_invalid_route_file_is_reported(tmp_path, monkeypatch):
    (tmp_path / "broken.yaml").write_text("env_id: highway-v0\nego:\n  route:\n    - lane: [a, b]\n")
    monkeypatch.setenv("AUTOMOT_ROUTES_DIR", str(tmp_path))
    assert list_routes() == ["broken"]
    with pytest.raises(ValueError, match="lane must be"):
        load_route("broken")


def test_route_paths_follow_the_legs():
    merge = EmbeddedWorld(load_route("merge"))
    options = merge.path.options
    assert "CHANGELANELEFT" in options
    # starts on the ramp (y = 14.5), ends in the right highway lane (y = 4)
    assert merge.path.points[0] == pytest.approx([30.0, 14.5])
    assert merge.path.points[-1][1] == pytest.approx(4.0)
    inter = EmbeddedWorld(load_route("intersection"))
    assert "LEFT" in inter.path.options
    # left turn from heading north (-y) to heading west (-x): yaw decreases by 90 deg
    turn = inter.path.heading_at(inter.path.length) - inter.path.heading_at(0.0)
    assert math.degrees((turn + math.pi) % (2 * math.pi) - math.pi) == pytest.approx(-90.0, abs=1.0)
    for w in (merge, inter):
        w.close()


def test_truncated_spec_shortens_the_path():
    spec = load_route("highway_lane_keep").truncated(40.0)
    world = EmbeddedWorld(spec)
    assert world.path.length == pytest.approx(40.0, abs=1e-6)
    world.close()


def test_route_path_projection_sign_convention():
    path = RoutePath(np.array([[0.0, 0.0], [10.0, 0.0], [20.0, 0.0]]), ["LANEFOLLOW"] * 3)
    s, lateral, dist = path.project((5.0, 1.5))
    assert s == pytest.approx(5.0) and dist == pytest.approx(1.5)
    assert lateral == pytest.approx(1.5)  # +y is to the right of a path heading +x (CARLA y-right)


def test_highway_env_heading_matches_carla_yaw():
    """highway-env's +heading turns +x towards +y, exactly CARLA's +yaw, so the mapping is the identity."""
    v = Vehicle(None, [0.0, 0.0], heading=math.radians(30.0), speed=10.0)
    v.step(0.1)
    assert v.position[0] > 0 and v.position[1] > 0
    x, y, yaw = hw_to_carla(1.0, 2.0, math.radians(30.0))
    assert (x, y, yaw) == pytest.approx((1.0, 2.0, 30.0))
    assert carla_to_hw(x, y, yaw) == pytest.approx((1.0, 2.0, math.radians(30.0)))


def test_gps_round_trip_and_axes():
    origin = location_to_gps(0.0, 0.0, 0.0)
    assert (origin["lat"], origin["lon"]) == pytest.approx((42.0, 2.0))
    east = location_to_gps(100.0, 0.0, 0.0)
    south = location_to_gps(0.0, 100.0, 0.0)
    assert east["lon"] > 2.0 and east["lat"] == pytest.approx(42.0)
    assert south["lat"] < 42.0  # CARLA +y is south
    rng = np.random.default_rng(0)
    for x, y in rng.uniform(-2000, 2000, size=(50, 2)):
        gps = location_to_gps(x, y, 1.0, 42.0, 2.0)
        back = gps_to_location(gps["lat"], gps["lon"], 42.0, 2.0)
        assert math.dist(back, (x, y)) < 0.1


def test_global_plan_dense_and_downsampled_are_consistent():
    world = EmbeddedWorld(load_route("merge"))
    gps, dense = build_global_plan(world.path.points, world.path.options, 42.0, 2.0)
    assert len(gps) == len(dense) == len(world.path.points)
    transform, option = dense[0]
    assert option == RoadOption.LANEFOLLOW
    assert transform.rotation.yaw == pytest.approx(0.0, abs=1e-6)  # the ramp starts heading east
    assert any(o == RoadOption.CHANGELANELEFT for _, o in dense)
    for (g, go), (t, to) in zip(gps, dense):
        assert go == to
        assert math.dist(gps_to_location(g["lat"], g["lon"]), (t.location.x, t.location.y)) < 0.1
    gps_ds, ds = build_global_plan(world.path.points, world.path.options, 42.0, 2.0, sample_factor=50.0)
    assert len(gps_ds) == len(ds) < len(dense) / 10
    assert (ds[-1][0].location.x, ds[-1][0].location.y) == pytest.approx(tuple(world.path.points[-1]))
    xy = np.array([[t.location.x, t.location.y] for t, _ in ds])
    assert np.linalg.norm(np.diff(xy, axis=0), axis=1).max() <= 52.0
    world.close()


def test_extra_vehicles_and_streams_are_spawned(tmp_path, monkeypatch):
    (tmp_path / "custom.yaml").write_text(
        "env_id: highway-v0\nenv_config: {vehicles_count: 0}\n"
        "traffic:\n"
        "  extra_vehicles: [{lane: ['0', '1', 1], s: 160.0, speed: 5.0}]\n"
        "  streams: [{lane: ['0', '1', 2], period_s: 1.0, speed: 10.0}]\n"
        "ego: {start_s: 100.0, route: [{lane: ['0', '1', 1], end_s: 300.0}]}\n"
    )
    monkeypatch.setenv("AUTOMOT_ROUTES_DIR", str(tmp_path))
    world = EmbeddedWorld(load_route("custom"))
    assert [(a.x, a.y, a.speed) for a in world.actors()] == [(160.0, 4.0, 5.0)]
    for _ in range(20):  # the stream fires on frame 20 (1 s at 20 Hz)
        world.tick()
    lane2 = [a for a in world.actors() if a.y == pytest.approx(8.0)]
    assert len(lane2) == 1 and lane2[0].x == pytest.approx(0.0, abs=0.6)
    world.close()
