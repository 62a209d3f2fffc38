"""Audit of the BEV-encoder sensor inputs against the released agent's recipe (automot-checkpoint-spec.md §5.3).

The ``_released_*`` helpers restate, in a few lines each, what the released agent does (TF++ recipe): camera frame
BGRA[:, :, :3] -> cv2 JPEG (default quality) -> BGR2RGB -> crop -> CHW float; LiDAR yaw -90 / +2.5 m into the ego
frame, previous half sweep moved by R(yaw_now)^T (pos_now - pos_prev) then rotated by the wrapped yaw change, and
the np.histogramdd grid transposed to rows = y, columns = x. Our agent path (decode_camera -> SceneInputBuilder)
must produce the same arrays bit for bit.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from automot.agent.inputs import SensorFrame, decode_camera
from automot.agent.rigs import get_rig
from automot.agent.scene_inputs import SceneInputBuilder
from automot.model.released.bev_config import BEVConfig, bev_config_from_dict
from automot.model.released.sensors import lidar_histogram

CFG = BEVConfig()  # released defaults: 384 x 1024 crop, 256 x 256 grid over [-32, 32] m at 4 px/m


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
