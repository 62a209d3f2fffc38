"""metric_info.json for embedded routes (issue 21.5), derived from the recorder's world.jsonl: one frame per 0.1 s,
the acceleration is the derivative of speed x heading, the yaw rate in deg/s (CARLA's unit), so the report's
smoothness is computed there instead of n/a."""

from __future__ import annotations

import json
import math

import pytest

from automot.evaluation import metrics as M
from automot.evaluation.metric_info import from_world_log, write_missing


def _world_log(path, speed_of_t, yaw_of_t, seconds=6.0, hz=20):
    lines = [json.dumps({"kind": "map", "lanes": {}})]
    x = y = 0.0
    for k in range(int(seconds * hz) + 1):
        t = k / hz
        v, yaw = speed_of_t(t), yaw_of_t(t)
        ego = {"x": x, "y": y, "yaw": yaw, "speed": v}
        lines.append(json.dumps({"kind": "tick", "frame": k, "sim_time": round(t, 4), "ego": ego}))
        x += v * math.cos(yaw) / hz
        y += v * math.sin(yaw) / hz
    path.write_text("\n".join(lines) + "\n")


def test_constant_acceleration_on_a_constant_turn(tmp_path):
    # speed 2 + 1.5 t (m/s), heading 0.1 t (rad): longitudinal acceleration 1.5 m/s^2, lateral v * yaw rate,
    # yaw rate 0.1 rad/s = 5.7296 deg/s; frames every 0.1 s of the 20 Hz log: 61 frames over 6 s
    log = tmp_path / "world.jsonl"
    _world_log(log, lambda t: 2.0 + 1.5 * t, lambda t: 0.1 * t)
    info = from_world_log(log)
    assert len(info) == 61 and info["10"]["sim_time"] == pytest.approx(1.0)
    raw = M.raw_signals(info)
    inner = slice(1, -1)  # np.gradient is one-sided at the ends
    assert list(raw["lon_acc"][inner]) == pytest.approx([1.5] * 59, abs=1e-2)
    speeds = [2.0 + 1.5 * 0.1 * i for i in range(61)]
    assert list(raw["lat_acc"][inner]) == pytest.approx([0.1 * v for v in speeds[1:-1]], abs=1e-2)
    assert list(raw["yaw_rate"][inner]) == pytest.approx([math.degrees(0.1)] * 59, abs=1e-6)
    assert info["0"]["right_vector"] == pytest.approx([0.0, 1.0, 0.0])  # CARLA: y to the right of x


def test_straight_steady_drive_is_smooth_and_written_once(tmp_path):
    folder = tmp_path / "eval" / "routes" / "merge_seed0"
    folder.mkdir(parents=True)
    _world_log(folder / "world.jsonl", lambda t: 8.0, lambda t: 0.0)
    (folder / "record.json").write_text("{}")
    assert write_missing(tmp_path / "eval", ["merge_seed0", "absent_seed0"]) == ["merge_seed0"]
    info = json.loads((folder / "metric_info.json").read_text())
    assert M.route_smoothness(info) == 1.0  # constant speed, no turn: every segment inside the bounds
    assert write_missing(tmp_path / "eval", ["merge_seed0"]) == []  # already there
