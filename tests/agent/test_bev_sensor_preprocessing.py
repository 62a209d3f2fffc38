"""Sensor preprocessing for the BEV encoder: JPEG round trip, crop, LiDAR ego frame, re-alignment, histogram."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from automot.model.released.bev_config import BEVConfig
from automot.model.released.sensors import (
    LidarAccumulator,
    align_lidar,
    camera_array,
    jpeg_round_trip,
    lidar_histogram,
    lidar_to_ego,
)

CFG = BEVConfig()


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
