"""automot inspect / replay / view (issue 15) on real short drives and on a hand-made run folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from automot.cli import main

TICKS = 40  # warm-up is 31 ticks with demo_tiny.yaml: 9 driving ticks


@pytest.fixture(scope="module")
def drive_run(tmp_path_factory) -> Path:
    """One real embedded drive of the tiny demo model, its inputs recorded."""
    out = tmp_path_factory.mktemp("drive") / "run"
    code = main(
        [
            "drive",
            "--world",
            "embedded",
            "--route",
            "highway_lane_keep",
            "--out",
            str(out),
            "--ticks",
            str(TICKS),
            "--no-progress",
        ]
    )
    assert code == 0
    return out


def _tick(frame: int, x: float, speed: float = 5.0, **extra) -> dict:
    return {
        "frame": frame,
        "sim_time": round(frame * 0.05, 6),
        "speed": speed,
        "ego": {"x": x, "y": 0.0, "yaw": 0.0},
        "control": {"steer": 0.0, "throttle": 0.5, "brake": 0.0, "mode": "drive"},
        "target_points": [[10.0, 0.0], [20.0, 0.0]],
        "path": [[float(i + 1), 0.0] for i in range(20)],
        "waypoints": [[float(i + 1), 0.0] for i in range(6)],
        "decision": "keep",
        "reasoning": None,
        "snapshot": {"version": frame // 2, "age_ticks": frame % 2, "age_s": 0.05 * (frame % 2)},
        "fast_step_ms": 5.0 + frame,
        "safe_stop": False,
        "safe_stop_reason": None,
        "safe_stop_kind": None,
        "refresh_overrun": None,
        "input_flags": [],
        "warmup": False,
        "error": None,
        **extra,
    }


def make_run(folder: Path, collision_tick: int = 12) -> Path:
    """A run folder whose only infraction is a vehicle collision at the ego position of ``collision_tick``."""
    folder.mkdir(parents=True, exist_ok=True)
    ticks = [_tick(f, x=2.0 * f) for f in range(20)]
    ticks[collision_tick - 1]["safe_stop"] = True
    ticks[collision_tick - 1]["safe_stop_reason"] = "stale snapshot"
    ticks[collision_tick - 1]["safe_stop_kind"] = "stale_snapshot"
    (folder / "ticks.jsonl").write_text("".join(json.dumps(t) + "\n" for t in ticks) + '{"frame": 20, "cut')
    x = 2.0 * collision_tick + 0.3
    record = {
        "route_id": "RouteScenario_0_rep0",
        "status": "Completed",
        "infractions": {
            "collisions_vehicle": [
                f"Agent collided against object with type=vehicle.car and id=7 at (x={x:.3f}, y=0.100, z=0.000)"
            ],
            "route_timeout": [],
            "min_speed_infractions": ["Average speed is 40% of the surrounding traffic's one"],
        },
        "scores": {"score_route": 100.0, "score_penalty": 0.6, "score_composed": 60.0},
    }
    (folder / "results.json").write_text(json.dumps({"_checkpoint": {"records": [record]}}))
    return folder


def test_inspect_hand_made_run_places_the_infraction(tmp_path, capsys):
    run = make_run(tmp_path / "run", collision_tick=12)
    assert main(["inspect", str(run), "--json", "--before", "3"]) == 0
    data = json.loads(capsys.readouterr().out)
    (route,) = data["routes"]
    assert route["status"] == "Completed" and route["ds"] == 60.0 and route["penalty"] == 0.6
    assert route["ticks"] == 20 and route["unreadable_tick_lines"] == 1
    first, second = route["infractions"]
    assert first["kind"] == "collisions_vehicle" and first["tick"] == 12 and first["sim_time"] == pytest.approx(0.6)
    assert [b["tick"] for b in first["ticks_before"]] == [9, 10, 11, 12]
    assert first["ticks_before"][2]["safe_stop"] == "stale snapshot"
    assert second["kind"] == "min_speed_infractions" and second["tick"] is None
    assert route["safe_stops"] == {"stale_snapshot": 1}
    assert route["latency_ms"]["fast_step"]["max"] == 24.0
    assert main(["inspect", str(run)]) == 0
    text = capsys.readouterr().out
    assert "collisions_vehicle at tick 12 t=0.60s" in text and "SAFE STOP (stale snapshot)" in text


def test_inspect_eval_folder_every_route(tmp_path, capsys):
    make_run(tmp_path / "eval" / "routes" / "10", collision_tick=5)
    make_run(tmp_path / "eval" / "routes" / "2", collision_tick=7)
    (tmp_path / "eval" / "routes" / "3").mkdir()  # a route not started yet
    assert main(["inspect", str(tmp_path / "eval"), "--json"]) == 0
    routes = json.loads(capsys.readouterr().out)["routes"]
    assert [r["route"] for r in routes] == ["2", "10"]
    assert [r["infractions"][0]["tick"] for r in routes] == [7, 5]


def test_inspect_not_a_run_folder(tmp_path, capsys):
    assert main(["inspect", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_inspect_real_drive(drive_run, capsys):
    assert main(["inspect", str(drive_run), "--json"]) == 0
    (route,) = json.loads(capsys.readouterr().out)["routes"]
    assert route["ticks"] == TICKS and route["driving_ticks"] == TICKS - 31
    assert route["status"].startswith("Failed")  # the tick limit ends the route as a timeout
    (timeout,) = route["infractions"]
    assert timeout["kind"] == "route_timeout" and timeout["tick"] == TICKS - 1
    assert route["latency_ms"]["fast_step"]["count"] == TICKS - 31
    assert route["control_modes"]["warmup"] == 31
