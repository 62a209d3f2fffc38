"""Bench2Drive and PDM-Lite readers (training/data/) on small fixtures written in their on-disk layouts.

Bench2Drive: ``anno/*.json.gz`` + ``camera/rgb_front``; targets, history and images of a clip; a missing field is
named; ``None`` / NaN heading and speed gaps are filled (leading ones from the first valid value) and a route with no
valid heading is skipped and reported; the dataset root (``DATAROOT/v1/<clip>``), the ``v1`` folder and a clip folder
are all accepted.

PDM-Lite: ``measurements/*.json.gz`` + ``rgb``; waypoints from ``ego_matrix`` or ``pos_global``/``theta``; sample
lists (``*.jsonl``): the current frame is ``bev_encoder_feature_frame``, else ``front[0]``, else ``image[-1]`` (never
a ``future`` frame, whatever the key order) and the row's own history frames are kept; the expert's planned
``route`` supervises the path head (switchable, too short a route falls back to the driven future).
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from automot.training.config import TrainConfig
from automot.training.data import load_episodes
from automot.training.data.bench2drive import read_b2d
from automot.training.data.pdm_lite import read_pdm_lite, read_sample_list
from automot.training.data.schema import DatasetError


def _gz(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        json.dump(data, f)


def _jpg(path: Path, value: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((16, 32, 3), value, np.uint8)).save(path)


# ---------------------------------------------------------------------------------------------- Bench2Drive
def _write_b2d_route(route: Path, frames: int = 50, speed: float = 5.0) -> None:
    """Driving north (world -y) at constant speed, 10 Hz; compass theta 0 = north."""
    for i in range(frames):
        y = 200.0 - speed * i / 10.0
        anno = {
            "x": 100.0,
            "y": y,
            "theta": float("nan") if i == 0 else 0.0,  # the first compass reading is NaN in CARLA
            "speed": speed,
            "x_command_near": 100.0,
            "y_command_near": 150.0,
            "x_command_far": 110.0,
            "y_command_far": 100.0,
            "command_near": 4,
            "command_far": 4,
            "bounding_boxes": [],
        }
        _gz(route / "anno" / f"{i:05d}.json.gz", anno)
        _jpg(route / "camera" / "rgb_front" / f"{i:05d}.jpg", i)


def test_bench2drive_reader_targets_history_and_images(tmp_path):
    _write_b2d_route(tmp_path / "b2d" / "ParkingExit_Town12_Route1_Weather1")
    _write_b2d_route(tmp_path / "b2d" / "Accident_Town03_Route2_Weather3", frames=40, speed=0.0)
    episodes = read_b2d(tmp_path / "b2d")
    assert [e.name for e in episodes] == ["Accident_Town03_Route2_Weather3", "ParkingExit_Town12_Route1_Weather1"]
    moving = episodes[1]
    assert len(moving.records) == 50 - 30  # frames with a full 3 s (30 frame) future
    rec = moving.records[4]
    np.testing.assert_allclose(rec.waypoints, [[2.5 * k, 0.0] for k in range(1, 7)], atol=1e-6)
    np.testing.assert_allclose(rec.path, [[float(k), 0.0] for k in range(1, 21)], atol=1e-6)
    # Near TP 50 m north of the start; far TP 100 m north and 10 m east = to the right of a north-bound car.
    np.testing.assert_allclose(rec.target_points, [[48.0, 0.0], [98.0, 10.0]], atol=1e-6)
    assert rec.decisions == ["keep", "keep", "keep"] and rec.speed == 5.0
    late = moving.records[12]  # history: the frames nearest 0.75 / 0.5 / 0.25 s earlier (10 Hz), oldest first
    assert late.history[1] == 7
    for h, s in zip(late.history, (0.75, 0.5, 0.25)):
        assert abs((late.frame - h) / 10.0 - s) <= 0.05 + 1e-9
    assert moving.records[0].history == [0, 0, 0]  # clipped at the start of the recording
    assert moving.load_image(rec.frame).mean() == pytest.approx(rec.frame, abs=2)  # JPEG keeps flat images
    standing = episodes[0].records[0]
    assert standing.decisions == ["stop", "stop", "stop"]
    np.testing.assert_allclose(standing.path[:3], [[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]], atol=1e-6)  # toward TP
    assert load_episodes("bench2drive", [str(tmp_path / "b2d")])[1].records[4].frame == rec.frame


def test_bench2drive_missing_field_is_named(tmp_path):
    route = tmp_path / "route"
    _gz(route / "anno" / "00000.json.gz", {"x": 1.0, "y": 2.0, "theta": 0.0})
    with pytest.raises(DatasetError, match="00000.json.gz: field 'speed' missing"):
        read_b2d(route)


def _b2d_clip(route: Path, frames: int = 40, theta_gaps=(0, 1, 2), speed_none=(1,), bad: bool = False) -> None:
    """East-bound (CARLA yaw 0 = +x; compass theta = yaw + pi/2) at 5 m/s, 10 Hz; anno.md's None / NaN gaps."""
    for i in range(frames):
        theta = math.pi / 2
        if i in theta_gaps:
            theta = None if i % 2 else float("nan")
        anno = {
            "x": 10.0 + 0.5 * i,
            "y": 20.0,
            "theta": None if bad else theta,
            "speed": None if i in speed_none else 5.0,
            "x_command_near": 60.0,
            "y_command_near": 20.0,
            "x_command_far": 110.0,
            "y_command_far": 20.0,
            "command_near": 4,
            "command_far": 4,
            "bounding_boxes": [],
        }
        _gz(route / "anno" / f"{i:05d}.json.gz", anno)
        _jpg(route / "camera" / "rgb_front" / f"{i:05d}.jpg")


def test_b2d_leading_heading_gap_and_none_speed(tmp_path):
    clip = tmp_path / "HardBreakRoute_Town01_Route30_Weather3"
    _b2d_clip(clip)
    (ep,) = read_b2d(clip)
    first = ep.records[0]
    # frame 0 at x=10: near TP 50 m straight ahead (a NaN heading read as north would put it 50 m to the right)
    np.testing.assert_allclose(first.target_points, [[50.0, 0.0], [100.0, 0.0]], atol=1e-6)
    assert first.decisions == ["keep", "keep", "keep"]
    assert ep.records[1].speed == 5.0  # None speed filled from the previous frame


def test_b2d_dataset_root_and_bad_route_skipped(tmp_path):
    root = tmp_path / "Bench2Drive-base"
    _b2d_clip(root / "v1" / "Accident_Town03_Route101_Weather23")
    _b2d_clip(root / "v1" / "ParkingExit_Town12_Route922_Weather12", bad=True)  # no valid heading at all
    problems: list[str] = []
    eps = read_b2d(root, problems=problems)
    assert [e.name for e in eps] == ["Accident_Town03_Route101_Weather23"]
    assert len(problems) == 1 and "ParkingExit_Town12_Route922_Weather12" in problems[0] and "theta" in problems[0]
    # the v1 folder and the clip folder are accepted too
    assert [e.name for e in read_b2d(root / "v1")] == ["Accident_Town03_Route101_Weather23"]
    assert len(read_b2d(root / "v1" / "Accident_Town03_Route101_Weather23")) == 1
    with pytest.raises(DatasetError, match="no readable route"):
        read_b2d(_only_bad(tmp_path))


def _only_bad(tmp_path: Path) -> Path:
    root = tmp_path / "only_bad"
    _b2d_clip(root / "v1" / "A", bad=True)
    _b2d_clip(root / "v1" / "B", bad=True)
    return root


# ---------------------------------------------------------------------------------------------- PDM-Lite
def _write_pdm_route(route: Path, frames: int = 24, use_matrix: bool = True) -> None:
    """4 Hz, 4 m/s along a left-curving arc (radius 10 m: 23 deg/s) starting east-bound at the origin."""
    radius, speed = 10.0, 4.0
    for i in range(frames):
        t = i / 4.0
        ang = -speed * t / radius  # yaw decreasing: turning left
        x, y = radius * math.sin(-ang), -radius * (1 - math.cos(ang))
        m = {"speed": speed, "target_point": [20.0, -5.0], "target_point_next": [40.0, -20.0], "command": 1}
        if use_matrix:
            c, s = math.cos(ang), math.sin(ang)
            m["ego_matrix"] = [[c, -s, 0, x], [s, c, 0, y], [0, 0, 1, 0], [0, 0, 0, 1]]
        else:
            m["pos_global"], m["theta"] = [x, y], ang
        _gz(route / "measurements" / f"{i:04d}.json.gz", m)
        _jpg(route / "rgb" / f"{i:04d}.jpg", 10 * i)


def test_pdm_lite_reader_waypoints_from_either_pose_format(tmp_path):
    _write_pdm_route(tmp_path / "pdm" / "Town12" / "Route_a_Rep0", use_matrix=True)
    _write_pdm_route(tmp_path / "pdm" / "Town13" / "Route_b_Rep0", use_matrix=False)
    a, b = read_pdm_lite(tmp_path / "pdm")
    assert len(a.records) == 24 - 12  # 3 s at 4 Hz
    for ep in (a, b):
        rec = ep.records[2]
        # Arc of radius 10 m: the point reached after arc length L lies at (R sin(L/R), -R (1 - cos(L/R))).
        arc = 4.0 * 0.5 * np.arange(1, 7)
        want = np.stack([10 * np.sin(arc / 10), -10 * (1 - np.cos(arc / 10))], axis=1)
        np.testing.assert_allclose(rec.waypoints, want, atol=1e-6)
        np.testing.assert_allclose(rec.target_points, [[20.0, -5.0], [40.0, -20.0]])  # already ego frame
        assert rec.decisions == ["turn left"] * 3
    assert a.load_image(a.records[0].frame).shape == (16, 32, 3)


def test_pdm_lite_sample_list(tmp_path):
    route = tmp_path / "data" / "Town12" / "Route_a_Rep0"
    _write_pdm_route(route)
    rows = [
        {"id": 0, "image": [f"Town12/Route_a_Rep0/rgb/{i:04d}.jpg" for i in (0, 1, 2, 3)], "conversations": []},
        {"id": 1, "image": [f"Town12/Route_a_Rep0/rgb/{i:04d}.jpg" for i in (3, 4, 5, 6)], "conversations": []},
        {"id": 2, "image": ["Town12/Route_a_Rep0/rgb/0020.jpg"]},  # no 3 s future: dropped
    ]
    listing = tmp_path / "pdm_lite_2hz_2tp_val_bev_encoder.jsonl"
    listing.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (episode,) = read_sample_list(listing, tmp_path / "data")
    assert [r.frame for r in episode.records] == [3, 6]
    listing.write_text(json.dumps({"image": ["Town99/Nope/rgb/0001.jpg"]}) + "\n")
    with pytest.raises(DatasetError, match="has no measurements"):
        read_sample_list(listing, tmp_path / "data")


PLANNED = [[2.5 + k, 0.1 * k] for k in range(30)]  # planned route: 1 m apart from 2.5 m ahead, veering right


def _pdm_route(route: Path, frames: int = 24, with_route: bool = True) -> None:
    """Straight east-bound at 4 m/s, 4 Hz, frames numbered 0000..; measurement rows as carla_garage writes them."""
    for i in range(frames):
        x = 4.0 * i / 4.0
        m = {
            "pos_global": [x, 0.0],
            "theta": 0.0,
            "speed": 4.0,
            "target_point": [30.0, 0.0],
            "target_point_next": [60.0, 0.0],
            "command": 4,
            "ego_matrix": [[1, 0, 0, x], [0, 1, 0, 0.0], [0, 0, 1, 0], [0, 0, 0, 1]],
        }
        if with_route:
            m["route"] = PLANNED
        _gz(route / "measurements" / f"{i:04d}.json.gz", m)
        _jpg(route / "rgb" / f"{i:04d}.jpg", i)


def _rgb(i: int) -> str:
    return f"Town12/Route_a_Rep0/rgb/{i:04d}.jpg"


PROMPT = "<image>\n<image>\n<image>\n<image>\n<bev>\nYou are driving. Target point: (30.0, 0.0). Predict the waypoints."


def _row(**keys) -> dict:
    row = dict(keys)
    row.setdefault("id", "Town12_Route_a_Rep0")
    row.setdefault("conversations", [{"from": "human", "value": PROMPT}, {"from": "gpt", "value": "keep"}])
    return row


def test_sample_list_current_frame_and_history(tmp_path):
    _pdm_route(tmp_path / "data" / "Town12" / "Route_a_Rep0")
    rows = [
        # `front` first, `future` after: the last /rgb/ path of the row is a future frame, not the current one
        _row(front=[_rgb(8)], image=[_rgb(i) for i in (0, 2, 4, 6)], future=[_rgb(10), _rgb(12)]),
        # bev_encoder_feature_frame wins over front and image
        _row(
            image=[_rgb(i) for i in (1, 3, 5, 7)],
            front=[_rgb(7)],
            future=[_rgb(9), _rgb(11)],
            bev_encoder_feature_frame=_rgb(7),
        ),
        # only `image`: its last entry is the current frame
        _row(image=[_rgb(i) for i in (2, 4, 6, 9)]),
    ]
    listing = tmp_path / "pdm_lite_2hz_2tp_train_bev_encoder.jsonl"
    listing.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (ep,) = read_sample_list(listing, tmp_path / "data")
    by_frame = {r.frame: r for r in ep.records}
    assert sorted(by_frame) == [7, 8, 9]
    assert by_frame[8].history == [0, 2, 4, 6]
    assert by_frame[7].history == [1, 3, 5]  # the current frame is not its own history
    assert by_frame[9].history == [2, 4, 6]
    # targets computed for the current time: 4 m/s east, waypoints 2 m apart straight ahead
    np.testing.assert_allclose(by_frame[8].waypoints, [[2.0 * k, 0.0] for k in range(1, 7)], atol=1e-6)
    np.testing.assert_allclose(by_frame[8].target_points, [[30.0, 0.0], [60.0, 0.0]])


def test_sample_list_row_without_current_frame_is_named(tmp_path):
    _pdm_route(tmp_path / "data" / "Town12" / "Route_a_Rep0")
    listing = tmp_path / "list.jsonl"
    listing.write_text(json.dumps(_row(future=[_rgb(3)])) + "\n")
    with pytest.raises(DatasetError, match="list.jsonl:1: no current frame"):
        read_sample_list(listing, tmp_path / "data")


def test_pdm_route_supervises_path(tmp_path):
    _pdm_route(tmp_path / "pdm" / "Town12" / "Route_a_Rep0")
    (ep,) = read_pdm_lite(tmp_path / "pdm")
    np.testing.assert_allclose(ep.records[0].path, PLANNED[:20])
    (driven,) = read_pdm_lite(tmp_path / "pdm", use_route=False)  # the switch off: the driven future
    np.testing.assert_allclose(driven.records[0].path, [[float(k), 0.0] for k in range(1, 21)], atol=1e-6)
    # through the config switch (default on)
    assert TrainConfig().data.pdm_route_path is True
    eps = load_episodes("pdm_lite", [str(tmp_path / "pdm")], pdm_route_path=False)
    np.testing.assert_allclose(eps[0].records[0].path, driven.records[0].path)


def test_pdm_route_too_short_falls_back(tmp_path):
    route = tmp_path / "pdm" / "R"
    _pdm_route(route, with_route=False)
    m = json.load(gzip.open(route / "measurements" / "0000.json.gz", "rt"))
    m["route"] = PLANNED[:5]  # fewer than 20 points: not usable
    _gz(route / "measurements" / "0000.json.gz", m)
    (ep,) = read_pdm_lite(tmp_path / "pdm")
    np.testing.assert_allclose(ep.records[0].path, [[float(k), 0.0] for k in range(1, 21)], atol=1e-6)


def test_sample_list_row_route_overrides(tmp_path):
    _pdm_route(tmp_path / "data" / "Town12" / "Route_a_Rep0", with_route=False)
    own = [[3.0 + k, -0.2 * k] for k in range(20)]
    listing = tmp_path / "list.jsonl"
    listing.write_text(json.dumps(_row(image=[_rgb(i) for i in (0, 2, 4)], front=[_rgb(6)], route=own)) + "\n")
    (ep,) = read_sample_list(listing, tmp_path / "data")
    np.testing.assert_allclose(ep.records[0].path, own)
