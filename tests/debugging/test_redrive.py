"""automot redrive (issue 22, item 7): the demo model's intersection collision (seed 0, tick ~292) re-driven.

From tick 0 with the same checkpoint the re-drive is the run (ticks, DS); from a tick before the collision with
another checkpoint it diverges after that tick and says whether the collision still happens; a world.jsonl that does
not match the re-simulated world stops it with exit 4; a CARLA run is refused in one line.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from doubles.paths import REPO

from automot.cli import main

TICKS = 300  # the demo model's collision at the intersection happens at tick ~292
DEMO = REPO / "checkpoints" / "tiny_demo"


@pytest.fixture(scope="module")
def collision_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("redrive") / "run"
    argv = ["drive", "--route", "intersection", "--seed", "0", "--ticks", str(TICKS), "--out", str(out)]
    assert main([*argv, "--no-progress"]) == 0
    record = json.loads((out / "results.json").read_text())["_checkpoint"]["records"][0]
    assert record["infractions"]["collisions_vehicle"], "the demo run no longer collides: pick another route / seed"
    return out


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_redrive_from_tick_0_with_the_same_checkpoint_is_the_run(collision_run, tmp_path, capsys):
    out = tmp_path / "same"
    argv = ["redrive", str(collision_run), "--from-tick", "0", "--checkpoint", str(DEMO), "--out", str(out)]
    assert main([*argv, "--no-progress"]) == 0
    capsys.readouterr()
    report = json.loads((out / "redrive.json").read_text())
    assert report["divergence_tick"] is None and report["control_divergence_tick"] is None
    assert report["original"] == report["redrive"] and report["redrive"]["ticks"] == TICKS
    a, b = _lines(collision_run / "ticks.jsonl"), _lines(out / "ticks.jsonl")
    assert [t["control"] for t in a] == [t["control"] for t in b]
    assert [t["ego"] for t in a] == [t["ego"] for t in b]
    assert all(i["still_happens"] for i in report["infractions"])
    assert report["side_by_side_frames"] == TICKS and (out / "side_by_side.mp4").stat().st_size > 0


def test_redrive_with_another_checkpoint_diverges_after_the_hand_over(collision_run, tmp_path, capsys):
    from safetensors.numpy import load_file, save_file

    other = tmp_path / "other"
    shutil.copytree(DEMO, other)
    weights = load_file(other / "model.safetensors")
    rng = np.random.default_rng(0)
    save_file(
        {k: v + rng.normal(0, 0.05, v.shape).astype(v.dtype) if v.dtype.kind == "f" else v for k, v in weights.items()},
        other / "model.safetensors",
    )
    hand_over = 250
    out = tmp_path / "other_run"
    argv = ["redrive", str(collision_run), "--from-tick", str(hand_over), "--checkpoint", str(other), "--out", str(out)]
    assert main([*argv, "--no-progress"]) == 0
    assert "redrive from tick 250" in capsys.readouterr().out
    report = json.loads((out / "redrive.json").read_text())
    assert report["state_checked_ticks"] == hand_over + 1
    assert report["divergence_tick"] is not None and report["divergence_tick"] > hand_over
    assert report["control_divergence_tick"] >= hand_over
    a, b = _lines(collision_run / "ticks.jsonl"), _lines(out / "ticks.jsonl")
    # before the hand-over the recorded controls were applied: the same ego path, tick for tick
    assert [t["ego"] for t in a[:hand_over]] == [t["ego"] for t in b[:hand_over]]
    assert [t["control"]["throttle"] for t in a[:hand_over]] == [t["control"]["throttle"] for t in b[:hand_over]]
    collision = next(i for i in report["infractions"] if i["kind"] == "collisions_vehicle")
    assert isinstance(collision["still_happens"], bool) and collision["other_actor_id"]
    record = json.loads((out / "results.json").read_text())["_checkpoint"]["records"][0]
    assert report["redrive"]["ds"] == record["scores"]["score_composed"]
    hit = any(f"id={collision['other_actor_id']} " in m for m in record["infractions"]["collisions_vehicle"])
    assert collision["still_happens"] == hit


def test_a_world_that_does_not_replay_fails_loudly(collision_run, tmp_path, capsys):
    run = tmp_path / "tampered"
    shutil.copytree(collision_run, run)
    lines = (run / "world.jsonl").read_text().splitlines()
    tick = json.loads(lines[6])  # line 0 is the map header: this is tick 5
    tick["ego"]["x"] += 0.01
    lines[6] = json.dumps(tick)
    (run / "world.jsonl").write_text("\n".join(lines) + "\n")
    argv = ["redrive", str(run), "--from-tick", "20", "--checkpoint", str(DEMO), "--out", str(tmp_path / "o")]
    assert main([*argv, "--no-progress"]) == 4
    err = capsys.readouterr().err
    assert "automot redrive: error:" in err and "tick 5: ego x" in err and "not deterministic" in err


def test_carla_runs_are_refused_in_one_line(tmp_path, capsys):
    run = tmp_path / "carla"
    run.mkdir()
    record = {"status": "Completed", "town_name": "Town12", "infractions": {}, "scores": {}}
    (run / "results.json").write_text(json.dumps({"_checkpoint": {"records": [record]}}))
    (run / "ticks.jsonl").write_text(json.dumps({"frame": 0, "control": {}}) + "\n")
    argv = ["redrive", str(run), "--from-tick", "0", "--checkpoint", str(DEMO), "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "embedded-world only" in line and "CARLA" in line
