"""A seeded collision in the embedded world, explained from the run's files (issue 22, items 1-3).

The crash agent (tests/doubles/crash_agent.py) drives full throttle into a car stopped 40 m ahead, records with the
agent's real Recorder (video, ticks.jsonl, world.jsonl) and writes the world's own state at each tick to
truth.jsonl. Every value below is checked against that truth, computed here independently of the debugging code.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from doubles.crash_agent import CAMERA_SPEC, crash_route
from doubles.paths import REPO

from automot.cli import main
from automot.world.dynamics import DEFAULT_PARAMS
from automot.world.runner import run_route

AGENT = str(REPO / "tests" / "doubles" / "crash_agent.py")
DT = 0.05


@pytest.fixture(scope="module")
def crash_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("crash") / "run"
    saved = os.environ.get("AUTOMOT_RECORD_DIR")
    os.environ["AUTOMOT_RECORD_DIR"] = str(out)
    try:
        run_route(crash_route(), AGENT, "", out, progress=False)
    finally:
        if saved is None:
            os.environ.pop("AUTOMOT_RECORD_DIR", None)
        else:
            os.environ["AUTOMOT_RECORD_DIR"] = saved
    return out


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def truth(crash_run) -> list[dict]:
    return _lines(crash_run / "truth.jsonl")


def _hit(truth: list[dict]) -> tuple[int, int]:
    """(first frame the world reports a contact, the actor id)."""
    first = next(t for t in truth if t["contact"])
    return first["frame"], first["contact"][0]


def _other(t: dict, actor_id: int) -> dict:
    return next(o for o in t["others"] if o["id"] == actor_id)


def test_world_log_matches_the_world_state(crash_run, truth):
    lines = _lines(crash_run / "world.jsonl")
    header, ticks = lines[0], lines[1:]
    ticks_jsonl = _lines(crash_run / "ticks.jsonl")
    assert header["kind"] == "map" and header["route"] and "0>1#1" in header["lanes"]
    assert [t["frame"] for t in ticks] == [t["frame"] for t in ticks_jsonl] == [t["frame"] for t in truth]
    for w, t in zip(ticks, truth):
        assert w["ego"]["x"] == pytest.approx(t["ego"]["x"], abs=1e-3)
        assert w["ego"]["speed"] == pytest.approx(t["ego"]["speed"], abs=1e-3)
        assert {a["id"] for a in w["actors"]} == {o["id"] for o in t["others"]}  # all within 60 m here
        for a in w["actors"]:
            o = _other(t, a["id"])
            assert (a["x"], a["y"]) == pytest.approx((o["x"], o["y"]), abs=1e-3)
            yaw = t["ego"]["yaw"]
            dx, dy = o["x"] - t["ego"]["x"], o["y"] - t["ego"]["y"]
            assert a["rel"][0] == pytest.approx(math.cos(yaw) * dx + math.sin(yaw) * dy, abs=2e-3)
            # the stopped car seen from the ego: relative forward velocity = its speed - the ego's along x
            assert a["rel"][2] == pytest.approx(o["speed"] - t["ego"]["vx"], abs=0.05)
        assert w["contacts"] == t["contact"]


def test_inspect_names_the_other_actor_and_its_approach(crash_run, truth, capsys):
    assert main(["inspect", str(crash_run), "--json"]) == 0
    route = json.loads(capsys.readouterr().out)["routes"][0]
    collision = next(i for i in route["infractions"] if i["kind"] == "collisions_vehicle")
    hit, actor_id = _hit(truth)
    other = collision["other_actor"]
    assert collision["tick"] == hit and other["id"] == actor_id and other["type"].startswith("vehicle.")
    for secs in (1, 2, 3):
        t = truth[hit - secs * 20]
        o = _other(t, actor_id)
        b = other["before"][f"{secs}s"]
        assert b["tick"] == hit - secs * 20
        assert (b["x"], b["y"]) == pytest.approx((o["x"], o["y"]), abs=1e-3)
        assert b["distance"] == pytest.approx(math.hypot(o["x"] - t["ego"]["x"], o["y"] - t["ego"]["y"]), abs=2e-3)
    before = truth[hit - 1]
    o = _other(before, actor_id)
    assert other["closing_speed"] == pytest.approx(before["ego"]["speed"] - o["speed"], abs=0.05)
    near = next(t["frame"] for t in truth if math.hypot(*np.subtract(_xy(_other(t, actor_id)), _xy(t["ego"]))) <= 30.0)
    assert other["first_within_30m"]["tick"] == near
    assert other["first_seen"]["tick"] == near  # straight ahead: in view as soon as it is within 30 m
    # last tick whose full brake (b_max after one tick) stops short of the spot the ego collided at
    spot = np.array(_xy(truth[hit]["ego"]))
    path = np.array([_xy(t["ego"]) for t in truth[: hit + 1]])
    to_go = np.concatenate([np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1)[::-1])[::-1], [0.0]])
    b_max = DEFAULT_PARAMS.b_max

    def stops(f: int) -> bool:
        v = truth[f]["ego"]["speed"]
        return v * DT + v * v / (2 * b_max) < to_go[f]

    brake = other["last_brake"]
    assert stops(brake["tick"]) and not any(stops(f) for f in range(brake["tick"] + 1, hit + 1))
    t = truth[brake["tick"]]
    o = _other(t, actor_id)
    gap = (o["x"] - o["length"] / 2) - (t["ego"]["x"] + t["ego_length"] / 2)  # aligned boxes in one lane
    assert brake["gap"] == pytest.approx(gap, abs=0.02)
    assert brake["ttc"] == pytest.approx(gap / (t["ego"]["speed"] - o["speed"]), abs=0.02)
    assert np.linalg.norm(path[brake["tick"]] - spot) == pytest.approx(brake["distance_to_spot"], abs=0.01)
    # the text report says the same in a few lines
    assert main(["inspect", str(crash_run)]) == 0
    text = capsys.readouterr().out
    assert f"other actor: {other['type']} id {actor_id}" in text and "time-to-collision" in text


def _xy(d: dict) -> tuple[float, float]:
    return d["x"], d["y"]


def _cyan(window: np.ndarray) -> int:
    """Pixels of the overlay's actor colour (0, 200, 255) after H.264."""
    win = window.astype(int)
    return int(np.sum((win[..., 0] < 90) & (win[..., 1] > 140) & (win[..., 2] > 190)))


def test_video_panel_draws_the_actor_before_the_collision(crash_run, truth):
    imageio = pytest.importorskip("imageio.v2")
    from automot.agent.overlay import round_up

    hit, actor_id = _hit(truth)
    frames = {}
    reader = imageio.get_reader(str(crash_run / "video.mp4"), format="FFMPEG")
    for i, frame in enumerate(reader):
        if i in (hit - 30, hit - 10, hit):
            frames[i] = np.asarray(frame)
    reader.close()
    height, cam_w = 256, round_up(CAMERA_SPEC.width * 256 / CAMERA_SPEC.height, 16)
    for f in (hit - 30, hit - 10):
        panel = frames[f][:, cam_w:]
        width = panel.shape[1]
        ppm = (height - 24) / 40.0  # draw_bev_panel: 12 px margins, 40 m range, ego 5 m above the bottom
        t = truth[f]
        o = _other(t, actor_id)
        ahead = o["x"] - t["ego"]["x"]
        rear_row = int(height - 12 - 5 * ppm - (ahead - o["length"] / 2) * ppm)
        col = int(width / 2 + (o["y"] - t["ego"]["y"]) * ppm)

        rows = slice(rear_row - 3, rear_row + 4)
        assert _cyan(panel[rows, col - 6 : col + 7]) >= 5, f"no actor box at tick {f}"
        assert _cyan(panel[rows, 4:20]) == 0  # nothing drawn where nothing is

    def red_band(frame: np.ndarray) -> bool:  # the collision banner: a red band across the camera image's bottom
        band = frame[height - 8 :, : cam_w // 2].astype(int)
        return bool(np.mean(band[..., 0]) > np.mean(band[..., 1]) + 60)

    # on the contact frame and the second before it (BANNER_TICKS = 20), not 30 ticks before
    assert red_band(frames[hit]) and red_band(frames[hit - 10]) and not red_band(frames[hit - 30])


def test_rerun_holds_the_actor_boxes(crash_run, truth, tmp_path):
    chunk = pytest.importorskip("rerun.chunk")
    rrd = tmp_path / "crash.rrd"
    assert main(["view", str(crash_run), "--save", str(rrd)]) == 0
    rows: dict[str, list[dict]] = {}
    for c in chunk.RrdReader(str(rrd)).stream():
        data = c.to_record_batch().to_pydict()
        rows.setdefault(c.entity_path, []).extend(dict(zip(list(data), v)) for v in zip(*data.values()))
    hit, actor_id = _hit(truth)
    boxes = {r["tick"]: r for r in rows["/world/actors"]}
    for f in (hit - 20, hit - 5):
        o = _other(truth[f], actor_id)
        centre = boxes[f]["Boxes3D:centers"][0]
        assert centre[:2] == pytest.approx([o["x"], o["y"]], abs=1e-3)
        assert boxes[f]["Boxes3D:half_sizes"][0][:2] == pytest.approx([o["length"] / 2, o["width"] / 2])
        assert boxes[f]["Boxes3D:labels"] == [f"idmvehicle {actor_id}"]
    assert {"/bev/actors", "/bev/actor_velocity", "/bev/lanes", "/map/actors"} <= set(rows)


def test_min_speed_readings_are_one_summary_not_infractions(tmp_path, capsys):
    folder = tmp_path / "run"
    folder.mkdir()
    pcts = [80.0, 120.5, 99.0, 150.0]
    record = {
        "status": "Completed",
        "infractions": {
            "min_speed_infractions": [f"Average speed is {p}% of the surrounding traffic's one" for p in pcts],
            "collisions_layout": [
                "Agent collided against object with type=static.terrain and id=0 at (x=1.000, y=2.000, z=0.000)"
            ],  # fmt: skip
        },
        "scores": {"score_composed": 65.0, "score_route": 100.0, "score_penalty": 0.65},
    }
    (folder / "results.json").write_text(json.dumps({"_checkpoint": {"records": [record]}}))
    assert main(["inspect", str(folder), "--json"]) == 0
    route = json.loads(capsys.readouterr().out)["routes"][0]
    assert [i["kind"] for i in route["infractions"]] == ["collisions_layout"]
    assert route["min_speed"] == {"readings": 4, "mean_pct": 112.38, "min_pct": 80.0, "below_100": 2}
    assert main(["inspect", str(folder)]) == 0
    text = capsys.readouterr().out
    assert "min_speed_infractions" not in text and "4 readings, mean 112.38 %" in text and "2 below 100 %" in text
