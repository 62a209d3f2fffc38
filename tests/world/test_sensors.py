"""Embedded world: camera renderer, LiDAR and the leaderboard input_data adapter."""

from __future__ import annotations

import math

import numpy as np
import pytest

from automot.world.lidar import LidarSensor
from automot.world.render import NEAR, ROAD, Box, CameraRenderer, CameraSpec, _clip_near
from automot.world.routes import load_route
from automot.world.scene import QuadSet, StaticScene, build_static_scene
from automot.world.sensors import SensorConfigurationInvalid, SensorSuite, validate_sensor_configuration
from automot.world.sim import EmbeddedWorld

FRONT = CameraSpec(width=1024, height=512, fov=110.0, x=-1.5, z=2.0)  # the released AutoMoT camera
MARKER = (10, 250, 20)  # BGR colour no other object uses


@pytest.fixture(scope="module")
def highway():
    world = EmbeddedWorld(load_route("highway_lane_keep"))
    yield world
    world.close()


@pytest.fixture(scope="module")
def highway_scene(highway):
    return build_static_scene(highway.network)


def _marker_mask(img: np.ndarray) -> np.ndarray:
    """Pixels of the (shaded) marker colour: strongly green; nothing else in the scene is."""
    b, g, r = (img[..., i].astype(int) for i in range(3))
    return (g > 60) & (g > 2 * b) & (g > 2 * r)


def test_camera_frame_is_bgra_with_road_ahead(highway, highway_scene):
    cam = CameraRenderer(FRONT, highway_scene)
    ego = highway.ego_state()
    img = cam.render((ego.x, ego.y, ego.yaw))
    assert img.shape == (512, 1024, 4) and img.dtype == np.uint8
    assert (img[..., 3] == 255).all()
    road = np.all(img[..., :3] == np.array(ROAD), axis=-1)
    assert road[256:].mean() > 0.2  # asphalt fills much of the lower half
    assert road[:250].sum() == 0  # and none of the sky
    sky = img[10, 512, :3]
    assert sky[0] > sky[2]  # blue channel dominates (B of BGR)


def test_vehicle_ahead_is_centred_and_one_behind_is_invisible():
    empty = StaticScene(QuadSet.from_list([]), QuadSet.from_list([]))
    cam = CameraRenderer(FRONT, empty)
    yaw = math.radians(30.0)  # any heading: the ego frame is what matters
    ahead = Box(15 * math.cos(yaw), 15 * math.sin(yaw), yaw, 4.9, 2.1, 1.5, MARKER)
    img = cam.render((0.0, 0.0, yaw), [ahead])
    ys, xs = np.nonzero(_marker_mask(img))
    assert len(xs) > 500
    assert abs(xs.mean() - 512) < 40 and 200 < ys.mean() < 330
    behind = Box(-15 * math.cos(yaw), -15 * math.sin(yaw), yaw, 4.9, 2.1, 1.5, MARKER)
    assert _marker_mask(cam.render((0.0, 0.0, yaw), [behind])).sum() == 0


def test_vehicle_right_of_the_ego_appears_right():
    empty = StaticScene(QuadSet.from_list([]), QuadSet.from_list([]))
    cam = CameraRenderer(FRONT, empty)
    img = cam.render((0.0, 0.0, 0.0), [Box(15.0, 5.0, 0.0, 4.9, 2.1, 1.5, MARKER)])  # +y = right in CARLA
    assert np.nonzero(_marker_mask(img))[1].mean() > 600


def test_near_plane_clipping_never_wraps_around():
    poly = np.array([[5.0, -1.0, 0.0], [5.0, 1.0, 0.0], [-5.0, 1.0, 0.0], [-5.0, -1.0, 0.0]])
    clipped = _clip_near(poly)
    assert (clipped[:, 0] >= NEAR - 1e-9).all() and len(clipped) == 4
    # a box straddling the camera: whatever is drawn must lie below the horizon (no mirrored geometry above)
    empty = StaticScene(QuadSet.from_list([]), QuadSet.from_list([]))
    cam = CameraRenderer(CameraSpec(256, 128, 90.0, z=1.0), empty)
    img = cam.render((0.0, 0.0, 0.0), [Box(0.5, 3.0, 0.3, 8.0, 2.0, 0.8, MARKER, cabin=False)])
    ys, _ = np.nonzero(_marker_mask(img))
    assert len(ys) > 0 and ys.min() >= 64


def test_render_with_traffic_is_repeatable_and_shows_the_traffic(highway, highway_scene):
    cam = CameraRenderer(FRONT, highway_scene)
    ego = highway.ego_state()
    boxes = [Box(a.x, a.y, a.yaw, a.length, a.width, a.height, MARKER) for a in highway.actors()]
    pose = (ego.x, ego.y, ego.yaw)
    first = cam.render(pose, boxes)
    assert np.array_equal(first, cam.render(pose, boxes))  # no state carried between frames
    assert _marker_mask(first).sum() > 0  # traffic ahead of the ego is drawn
    assert _marker_mask(cam.render(pose, [])).sum() == 0


def test_lidar_half_sweeps_ground_and_vehicle():
    lidar = LidarSensor({"x": 0.0, "y": 0.0, "z": 2.5})
    box = Box(10.0, 0.0, 0.0, 4.0, 2.0, 1.5, MARKER)
    even = lidar.measure((0.0, 0.0, 0.0), [box], frame=0)
    odd = lidar.measure((0.0, 0.0, 0.0), [box], frame=1)
    assert even.dtype == np.float32 and even.shape[1] == 4 and 1000 < len(even) < 20000
    assert (even[:, 1] >= -1e-3).all() and (odd[:, 1] <= 1e-3).all()  # alternate half sweeps
    ground = even[np.abs(even[:, 2] + 2.5) < 1e-3]
    assert len(ground) > 0.5 * len(even)
    hits = even[(even[:, 2] > -2.4) & (np.abs(even[:, 1]) < 1.0)]
    assert len(hits) > 10 and hits[:, 0].min() == pytest.approx(8.0, abs=0.05)  # the box's rear face
    assert ((even[:, 3] > 0) & (even[:, 3] <= 1)).all()


SENSORS = [
    {"type": "sensor.camera.rgb", "id": "CAM_FRONT", "x": -1.5, "y": 0.0, "z": 2.0, "roll": 0.0, "pitch": 0.0,
     "yaw": 0.0, "width": 320, "height": 160, "fov": 110},
    {"type": "sensor.lidar.ray_cast", "id": "LIDAR", "x": 0.0, "y": 0.0, "z": 2.5, "roll": 0.0, "pitch": 0.0,
     "yaw": -90.0},
    {"type": "sensor.other.imu", "id": "IMU", "x": 0.0, "y": 0.0, "z": 0.0, "roll": 0.0, "pitch": 0.0, "yaw": 0.0},
    {"type": "sensor.other.gnss", "id": "GPS", "x": 0.0, "y": 0.0, "z": 0.0},
    {"type": "sensor.speedometer", "id": "SPEED", "reading_frequency": 20},
]  # fmt: skip


def test_input_data_matches_the_leaderboard_format(highway):
    suite = SensorSuite(SENSORS, highway, seed=0, noise=False)
    highway.ego.speed = 3.0
    data = suite.read()
    assert set(data) == {"CAM_FRONT", "LIDAR", "IMU", "GPS", "SPEED"}
    assert all(frame == highway.frame for frame, _ in data.values())
    cam = data["CAM_FRONT"][1]
    assert cam.shape == (160, 320, 4) and cam.dtype == np.uint8
    lidar = data["LIDAR"][1]
    assert lidar.dtype == np.float32 and lidar.ndim == 2 and lidar.shape[1] == 4
    imu = data["IMU"][1]
    assert imu.dtype == np.float64 and imu.shape == (7,)
    ego = highway.ego_state()
    assert imu[2] == pytest.approx(9.81)  # gravity on z
    assert imu[6] == pytest.approx((ego.yaw + math.pi / 2) % (2 * math.pi))  # compass; agents undo "- pi/2"
    gps = data["GPS"][1]
    assert gps.dtype == np.float64 and gps.shape == (3,)
    from automot.world.geo import gps_to_location

    assert math.dist(gps_to_location(gps[0], gps[1]), (ego.x, ego.y)) < 0.1
    assert data["SPEED"][1] == {"speed": pytest.approx(3.0)}


def test_gnss_and_imu_noise_is_seeded(highway):
    a = SensorSuite(SENSORS[2:4], highway, seed=5).read()
    b = SensorSuite(SENSORS[2:4], highway, seed=5).read()
    c = SensorSuite(SENSORS[2:4], highway, seed=6).read()
    assert np.array_equal(a["GPS"][1], b["GPS"][1]) and not np.array_equal(a["GPS"][1], c["GPS"][1])


@pytest.mark.parametrize(
    ("sensors", "message"),
    [
        ([{"type": "sensor.camera.thermal", "id": "X"}], "unknown sensor type"),
        ([{"type": "sensor.other.radar", "id": "R"}], "not simulated by the embedded world"),
        ([{"type": "sensor.speedometer", "id": "S"}, {"type": "sensor.other.imu", "id": "S"}], "duplicate"),
        ([{"type": "sensor.other.imu", "id": "I", "x": 0.0, "y": 0.0, "z": 3.5}], "from the ego"),
        ([{"type": "sensor.other.imu", "id": "A"}, {"type": "sensor.other.imu", "id": "B"}], "too many"),
    ],
)
def test_invalid_sensor_lists_are_rejected(sensors, message):
    with pytest.raises(SensorConfigurationInvalid, match=message):
        validate_sensor_configuration(sensors)
