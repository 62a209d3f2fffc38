"""Bench2Drive and PDM-Lite readers on small synthetic samples written in their on-disk layouts."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from automot.training.data import load_episodes
from automot.training.data.bench2drive import read_b2d
from automot.training.data.pdm_lite import read_pdm_lite, read_sample_list
from automot.training.data.schema import DatasetError


def _gz(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        json.dump(data, f)


def _jpg(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((16, 32, 3), value, np.uint8)).save(path)


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


def test_bench2drive_reader(tmp_path):
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


def test_pdm_lite_reader(tmp_path):
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
