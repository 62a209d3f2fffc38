"""Sensor inputs of the BEV encoder: the preprocessing primitives (model/released/sensors.py: JPEG round trip,
crop, LiDAR ego frame, re-alignment, histogram, accumulator) and the agent's whole path (decode_camera ->
SceneInputBuilder) against the released agent's recipe, bit for bit.

The ``_released_*`` helpers restate, in a few lines each, what the released agent (OscarHuangWind/AutoMoT 278fa5a,
the TF++ recipe) does: camera frame BGRA[:, :, :3] -> cv2 JPEG (default quality) -> BGR2RGB -> crop -> CHW float;
LiDAR yaw -90 / +2.5 m into the ego frame, previous half sweep moved by R(yaw_now)^T (pos_now - pos_prev) then
rotated by the wrapped yaw change, and the np.histogramdd grid transposed to rows = y, columns = x.
"""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
import pytest
import torch

from automot.agent.inputs import SensorFrame, decode_camera
from automot.agent.rigs import get_rig
from automot.agent.scene_inputs import SceneInputBuilder
from automot.model.released.bev_config import BEVConfig, bev_config_from_dict
from automot.model.released.sensors import (
    LidarAccumulator,
    align_lidar,
    camera_array,
    jpeg_round_trip,
    lidar_histogram,
    lidar_to_ego,
)

CFG = BEVConfig()  # released defaults: 384 x 1024 crop, 256 x 256 grid over [-32, 32] m at 4 px/m


# ---------------------------------------------------------------------------------------------- preprocessing primitives
def test_jpeg_round_trip_uses_quality_95():
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8), (5, 5), 0)

    def at(q):
        return cv2.imdecode(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])[1], cv2.IMREAD_UNCHANGED)

    out = jpeg_round_trip(img)
    assert np.array_equal(out, at(95)) and not np.array_equal(out, at(75)) and not np.array_equal(out, img)


def test_camera_crop_and_channel_order():
    frame = np.zeros((512, 1024, 4), dtype=np.uint8)  # CARLA BGRA
    frame[:, :, 0] = 200  # blue
    frame[400:, :, 2] = 255  # red stripe in the cut-off bottom rows
    arr = camera_array(frame, CFG, jpeg=False)
    assert arr.shape == (3, 384, 1024) and arr.dtype == np.float32
    assert (arr[2] == 200).all() and (arr[0] == 0).all()  # RGB order; bottom rows 384.. removed
    narrow = camera_array(frame, dataclasses.replace(CFG, cropped_width=1000), jpeg=False)
    assert narrow.shape == (3, 384, 1000)  # 12 columns off each side


def test_lidar_to_ego_applies_mounting_yaw_and_offset():
    ego = lidar_to_ego(np.array([[1.0, 0.0, 0.0, 0.7]]), CFG)  # 4th column (intensity) ignored
    assert np.allclose(ego, [[0.0, -1.0, 2.5]])  # yaw -90 deg, mounted 2.5 m up


def _to_ego(world, pose):
    x, y, yaw = pose
    c, s = np.cos(yaw), np.sin(yaw)
    d = world[:, :2] - [x, y]
    return np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1], world[:, 2]], 1)


def test_realignment_maps_static_points_into_the_new_frame():
    world = np.array([[10.0, 3.0, 1.0], [-4.0, 7.0, 0.5], [2.0, -6.0, 2.0]])
    a, b = (5.0, -2.0, 0.3), (6.2, -1.1, 0.3)
    assert np.allclose(align_lidar(_to_ego(world, a), a, b), _to_ego(world, b), atol=1e-9)  # exact without turning


def test_realignment_keeps_the_released_turning_quirk():
    # Released (TF++) order: translate by R(yaw_now)^T dpos, THEN rotate by the yaw change - exact only for
    # dyaw = 0. We reproduce it; over one 20 Hz tick the error is millimetres.
    world = np.array([[10.0, 3.0, 1.0], [-4.0, 7.0, 0.5]])
    a, b = (5.0, -2.0, 0.3), (5.6, -1.7, 0.33)
    pa = _to_ego(world, a)
    dyaw = b[2] - a[2]
    rot = np.array([[np.cos(dyaw), -np.sin(dyaw), 0], [np.sin(dyaw), np.cos(dyaw), 0], [0, 0, 1]])
    c, s = np.cos(b[2]), np.sin(b[2])
    dpos = np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]]) @ np.array([b[0] - a[0], b[1] - a[1], 0.0])
    released = (rot.T @ (pa - dpos).T).T
    ours = align_lidar(pa, a, b)
    assert np.allclose(ours, released, atol=1e-12)
    assert 0 < np.abs(ours - _to_ego(world, b)).max() < 0.05


def test_histogram_cells_clip_heights_and_transpose():
    pts = [[1.1, -2.3, 1.0]] * 7 + [[5.0, 5.0, 0.1], [5.0, 5.0, 150.0], [40.0, 0.0, 1.0], [-20.0, 10.0, 1.0]]
    hist = lidar_histogram(np.array(pts), CFG)
    assert hist.shape == (1, 256, 256) and hist.dtype == np.float32
    row, col = int((-2.3 + 32) * 4), int((1.1 + 32) * 4)  # rows are y, columns are x
    assert hist[0, row, col] == 1.0  # 7 hits clipped at 5, divided by 5
    assert hist[0, int((10 + 32) * 4), int((-20 + 32) * 4)] == np.float32(0.2)
    assert hist.sum() == np.float32(1.2)  # the ground hit, the too-high hit and the out-of-range hit are gone
    ground = lidar_histogram(np.array(pts), dataclasses.replace(CFG, use_ground_plane=True))
    assert ground.shape == (2, 256, 256) and ground[0, 148, 148] == np.float32(0.2)  # 'below' channel first


def test_accumulator_joins_previous_half_sweep():
    acc = LidarAccumulator(CFG)
    sensor = np.array([[0.0, 10.0, -1.0]])  # yaw -90: ego (10, 0, 1.5)
    first = acc.push(sensor, (0.0, 0.0, 0.0))
    assert np.allclose(first, [[10.0, 0.0, 1.5]])
    second = acc.push(np.array([[0.0, 5.0, -1.0]]), (2.0, 0.0, 0.0))  # drove 2 m forward
    assert np.allclose(second, [[5.0, 0.0, 1.5], [8.0, 0.0, 1.5]])


# ---------------------------------------------------------------------------------------------- the agent's path against the released recipe
def _rot(yaw: float) -> np.ndarray:
    return np.array([[np.cos(yaw), -np.sin(yaw), 0.0], [np.sin(yaw), np.cos(yaw), 0.0], [0.0, 0.0, 1.0]])


def _wrap(x: float) -> float:
    x = x % (2 * np.pi)
    return x - 2 * np.pi if x > np.pi else x


def _released_camera(bgra: np.ndarray) -> np.ndarray:
    _, buf = cv2.imencode(".jpg", bgra[:, :, :3])
    rgb = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB)
    side = (rgb.shape[1] - 1024) // 2
    return np.transpose(rgb[0:384, side : rgb.shape[1] - side, :], (2, 0, 1))


def _released_to_ego(sensor: np.ndarray) -> np.ndarray:
    return (_rot(np.deg2rad(-90.0)) @ sensor[:, :3].T).T + np.array([0.0, 0.0, 2.5])


def _released_align(points: np.ndarray, prev: tuple, now: tuple) -> np.ndarray:
    pos_diff = _rot(now[2]).T @ np.array([now[0] - prev[0], now[1] - prev[1], 0.0])
    return (_rot(_wrap(now[2] - prev[2])).T @ (points - pos_diff).T).T


def _sensor_points(ego_xyz: np.ndarray) -> np.ndarray:
    """Ego-frame (x fwd, y right, z up) points -> CARLA LiDAR frame of the yaw -90 / z 2.5 mount, with intensity."""
    ego_xyz = np.atleast_2d(ego_xyz)
    return np.stack([-ego_xyz[:, 1], ego_xyz[:, 0], ego_xyz[:, 2] - 2.5, np.full(len(ego_xyz), 0.5)], 1).astype(
        np.float32
    )


def _frame(image_rgb: np.ndarray, lidar: np.ndarray) -> SensorFrame:
    return SensorFrame(0, {"CAM_FRONT": image_rgb}, np.zeros(3), np.zeros(7), 0.0, lidar)


def test_agent_camera_path_is_the_released_recipe_bit_for_bit():
    rig = get_rig("automot-front")
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:512, 0:1024]
    smooth = np.stack([xx % 256, yy % 256, (xx + 2 * yy) % 256, np.full_like(xx, 255)], -1)
    bgra = np.clip(smooth + rng.normal(0, 6, smooth.shape), 0, 255).astype(np.uint8)
    builder = SceneInputBuilder(CFG, rig)
    rgb_in = decode_camera(rig.get("CAM_FRONT"), bgra)  # what parse_input_data hands the builder
    inputs = builder.update(_frame(rgb_in, _sensor_points(np.array([5.0, 0.0, 1.0]))), np.zeros(2), 0.0)
    ref = _released_camera(bgra)
    assert inputs["rgb"].shape == (3, 384, 1024) and inputs["rgb"].dtype == np.float32
    assert np.array_equal(inputs["rgb"], ref.astype(np.float32))
    assert not np.array_equal(ref, np.transpose(cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGB)[:384], (2, 0, 1)))  # JPEG'd
    # 0..255 integers survive the bf16 cast the released agent applies before the backbone.
    assert torch.equal(torch.from_numpy(inputs["rgb"]).bfloat16().float(), torch.from_numpy(inputs["rgb"]))


def test_histogram_pixel_of_a_point_ahead_and_right():
    """Ego (10.1 m ahead, 5.1 m right, 1 m up) -> row floor((5.1 + 32) * 4) = 148 (y), column 168 (x).

    Bin-centre coordinates on purpose: the -90 deg mount rotation leaves ~1e-15 m residuals (cos(-pi/2) != 0), so a
    point exactly on a bin edge can land one bin lower - in the released code too (same maths).
    """
    builder = SceneInputBuilder(CFG, get_rig("automot-front"))
    image = np.zeros((512, 1024, 3), np.uint8)
    pts = np.array([[10.1, 5.1, 1.0], [-10.1, -5.1, 1.0], [3.1, 3.1, 0.1], [3.1, -3.1, 150.0]])
    sensor = _sensor_points(pts)
    hist = builder.update(_frame(image, sensor), np.zeros(2), 0.0)["lidar"]
    assert hist.shape == (1, 256, 256)
    # Ahead-right -> lower-right of centre (128, 128); behind-left -> upper-left; ground and too-high hits are gone.
    assert {tuple(map(int, i)) for i in np.argwhere(hist)} == {(0, 148, 168), (0, 107, 87)}
    assert hist[0, 148, 168] == np.float32(0.2)  # one hit / hist_max_per_pixel
    kept = _released_to_ego(sensor)[:2]
    released = np.histogramdd(kept[:, :2], bins=(np.linspace(-32, 32, 257), np.linspace(-32, 32, 257)))[0].T / 5
    assert np.array_equal(hist[0], released.astype(np.float32))


def test_two_tick_cloud_equals_the_released_alignment_including_yaw_wrap():
    rng = np.random.default_rng(3)
    rig = get_rig("automot-front")
    image = np.zeros((512, 1024, 3), np.uint8)
    cases = [((100.0, -40.0, 3.10), (100.9, -39.9, -3.12))]  # heading crosses +-pi between the two ticks
    cases += [
        ((x, y, yaw), (x + rng.uniform(-1, 1), y + rng.uniform(-1, 1), _wrap(yaw + rng.uniform(-0.2, 0.2))))
        for x, y, yaw in rng.uniform([-300, -300, -np.pi], [300, 300, np.pi], (6, 3))
    ]
    for prev, now in cases:
        builder = SceneInputBuilder(CFG, rig)
        s0, s1 = (np.hstack([rng.uniform(-30, 30, (400, 3)), np.ones((400, 1))]).astype(np.float32) for _ in "ab")
        builder.update(_frame(image, s0), np.array(prev[:2]), prev[2], build=False)
        got = builder.update(_frame(image, s1), np.array(now[:2]), now[2])["lidar"]
        cloud = np.concatenate([_released_to_ego(s1), _released_align(_released_to_ego(s0), prev, now)])
        assert np.array_equal(got, lidar_histogram(cloud, CFG))


def test_bev_config_overrides_reach_the_histogram():
    cfg = bev_config_from_dict(
        {
            "py/object": "team_code.config.GlobalConfig",
            "lidar_split_height": 0.5,
            "max_height_lidar": 2.0,
            "use_ground_plane": 1,
            "hist_max_per_pixel": 2,
        }
    )
    assert {"lidar_split_height", "max_height_lidar", "use_ground_plane", "hist_max_per_pixel"} <= cfg.from_file
    pts = np.array([[1.0, 1.0, 0.3]] * 3 + [[2.0, 2.0, 1.0], [4.0, 4.0, 2.0]])
    hist = lidar_histogram(pts, cfg)
    assert hist.shape == (2, 256, 256)  # ground plane on: [below, above]
    assert hist[0, 132, 132] == 1.0 and hist[1, 132, 132] == 0.0  # z 0.3 <= 0.5 is "below"; 3 hits clip at 2
    assert hist[1, 136, 136] == 0.5 and hist.sum() == 1.5  # z 2.0 is dropped (z < max_height_lidar only)


def test_histogram_accepts_points_with_intensity_like_the_release():
    pts = np.array([[10.0, 5.0, 1.0, 0.7]] * 3)  # released splat reads point_cloud[:, :2] and lidar[..., 2]
    hist = lidar_histogram(pts, CFG)
    assert {tuple(map(int, i)) for i in np.argwhere(hist)} == {(0, 148, 168)}
    assert math.isclose(float(hist.sum()), 0.6, rel_tol=1e-6)
    with pytest.raises(ValueError, match=r"expected \(N, >=3\)"):
        lidar_histogram(np.zeros((4, 2)), CFG)


def test_encoder_input_shape_follows_the_crop_rule():
    import dataclasses

    from automot.model.released.sensors import camera_array
    from automot.runtime.scene import scene_input_shapes

    frame = np.zeros((512, 1024, 4), np.uint8)
    assert scene_input_shapes(CFG)["rgb"] == camera_array(frame, CFG, jpeg=False).shape == (3, 384, 1024)
    uncropped = dataclasses.replace(CFG, crop_image=False)
    assert scene_input_shapes(uncropped)["rgb"] == camera_array(frame, uncropped, jpeg=False).shape == (3, 512, 1024)
    odd = dataclasses.replace(CFG, cropped_width=1021)  # odd difference: the released slice keeps one extra column
    assert scene_input_shapes(odd)["rgb"] == camera_array(frame, odd, jpeg=False).shape == (3, 384, 1022)
