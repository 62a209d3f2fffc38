"""automot inspect / replay / view (issue 15) on real short drives and on a hand-made run folder."""

from __future__ import annotations

import json
import shutil
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
            "--record-inputs",
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
    (first,) = route["infractions"]  # min-speed entries are readings, summarised apart (test_collision_story.py)
    assert first["kind"] == "collisions_vehicle" and first["tick"] == 12 and first["sim_time"] == pytest.approx(0.6)
    assert [b["tick"] for b in first["ticks_before"]] == [9, 10, 11, 12]
    assert first["ticks_before"][2]["safe_stop"] == "stale snapshot"
    assert route["min_speed"] == {"readings": 1, "mean_pct": 40.0, "min_pct": 40.0, "below_100": 1}
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
    assert route["status"] == "Stopped - tick limit"  # the --ticks cap stops the route: no timeout infraction
    assert route["infractions"] == []
    assert route["latency_ms"]["fast_step"]["count"] == TICKS - 31
    assert route["control_modes"]["warmup"] == 31


# ---------------------------------------------------------------- recorded inputs and replay

REPO = Path(__file__).resolve().parents[2]
DEMO_CHECKPOINT = REPO / "checkpoints" / "tiny_demo"


def test_record_inputs_manifest_and_chunks(drive_run):
    import numpy as np

    from automot.agent.input_recorder import FORMAT, FORMAT_VERSION, checkpoint_identity

    manifest = json.loads((drive_run / "inputs" / "manifest.json").read_text())
    assert manifest["format"] == FORMAT and manifest["format_version"] == FORMAT_VERSION and manifest["complete"]
    assert manifest["checkpoint"]["sha256"] == checkpoint_identity(str(DEMO_CHECKPOINT))["sha256"]
    assert len(manifest["config_sha256"]) == 64 and manifest["config"]["record_inputs"] is True
    (chunk,) = manifest["chunks"]
    assert (chunk["first_tick"], chunk["last_tick"], chunk["steps"], chunk["submits"]) == (31, TICKS - 1, 9, 9)
    with np.load(drive_run / "inputs" / chunk["file"]) as data:
        frames = [k for k in data.files if k.startswith("frame_")]
        assert len(frames) == chunk["frames"] == 9 + 5  # t and t-5 for 9 submits: 14 distinct frames
        assert data[frames[0]].shape == (128, 256, 3) and data[frames[0]].dtype == np.uint8
        assert data["out_path"].shape == (9, 20, 2) and data["out_waypoints"].shape == (9, 6, 2)
        assert data["sub_frames"].shape == (9, 2)
        ticks = [json.loads(line) for line in (drive_run / "ticks.jsonl").read_text().splitlines()]
        # ticks.jsonl rounds to 4 decimals; the input record keeps the runtime's own values
        assert np.allclose(data["out_path"][-1], ticks[-1]["path"], atol=1e-4)
        assert str(data["out_decision"][-1]) == ticks[-1]["decision"]


def test_replay_reproduces_the_run(drive_run, tmp_path, capsys):
    assert main(["replay", str(drive_run), "--out", str(tmp_path / "r"), "--mode", "sync"]) == 0
    report = json.loads((tmp_path / "r" / "replay.json").read_text())
    assert report["ticks"] == TICKS - 31 and report["same_model"] and not report["comparison"]
    assert report["max_abs_path_diff"] <= 1e-5 and report["max_abs_waypoint_diff"] <= 1e-5
    assert report["decision_changes"] == 0
    assert "reproduction" in capsys.readouterr().out
    assert main(["replay", str(drive_run), "--out", str(tmp_path / "w"), "--tick-range", "33:37"]) == 0
    window = json.loads((tmp_path / "w" / "replay.json").read_text())
    assert window["ticks"] == 4 and window["tick_range"] == [33, 36]
    capsys.readouterr()
    assert main(["replay", str(drive_run), "--out", str(tmp_path / "m"), "--mode", "fast"]) == 2
    assert "--mode 'fast'" in capsys.readouterr().err


def test_replay_with_another_checkpoint_compares(drive_run, tmp_path):
    import numpy as np
    from safetensors.numpy import load_file, save_file

    other = tmp_path / "other"
    shutil.copytree(DEMO_CHECKPOINT, other)
    weights = load_file(other / "model.safetensors")
    rng = np.random.default_rng(0)
    noisy = {
        k: v + rng.normal(0, 0.05, v.shape).astype(v.dtype) if v.dtype.kind == "f" else v for k, v in weights.items()
    }
    save_file(noisy, other / "model.safetensors")
    assert main(["replay", str(drive_run), "--checkpoint", str(other), "--out", str(tmp_path / "c")]) == 0
    report = json.loads((tmp_path / "c" / "replay.json").read_text())
    assert report["comparison"] and not report["same_model"] and report["max_abs_path_diff"] > 1e-3
    assert report["video"] == "compare.mp4" and (tmp_path / "c" / "compare.mp4").stat().st_size > 0
    assert report["control_changes"] == len(report["controls_differ_ticks"])
    # the recorded outputs through the run's controllers give the controls the run applied
    applied = {t["frame"]: t["control"] for t in map(json.loads, (drive_run / "ticks.jsonl").read_text().splitlines())}
    for row in report["per_tick"]:
        assert row["recorded_control"]["steer"] == pytest.approx(applied[row["tick"]]["steer"], abs=1e-6)
        assert row["recorded_control"]["throttle"] == pytest.approx(applied[row["tick"]]["throttle"], abs=1e-6)


def test_compare_video_header_shows_the_recorded_numbers(drive_run, tmp_path, monkeypatch):
    """compare.mp4's two headers: the tick's real sim time and speed, the applied (left) and replayed (right)
    controls -- captured as the records the frames are drawn from."""
    from automot.agent import overlay

    drawn = []
    real = overlay.compose_frame
    monkeypatch.setattr(overlay, "compose_frame", lambda rec, *a, **k: drawn.append(rec) or real(rec, *a, **k))
    from safetensors.numpy import load_file, save_file

    other = tmp_path / "other"
    shutil.copytree(DEMO_CHECKPOINT, other)
    weights = load_file(other / "model.safetensors")
    save_file({k: v * 1.01 if v.dtype.kind == "f" else v for k, v in weights.items()}, other / "model.safetensors")
    assert main(["replay", str(drive_run), "--checkpoint", str(other), "--out", str(tmp_path / "c")]) == 0
    report = json.loads((tmp_path / "c" / "replay.json").read_text())
    assert report["comparison"] and report["video"] == "compare.mp4"
    ticks = {t["frame"]: t for t in map(json.loads, (drive_run / "ticks.jsonl").read_text().splitlines())}
    rows = {r["tick"]: r for r in report["per_tick"]}
    assert len(drawn) == 2 * len(rows) and len(rows) > 3
    for left, right in zip(drawn[::2], drawn[1::2]):
        t = ticks[left.frame]
        assert left.sim_time == right.sim_time == pytest.approx(t["sim_time"]) and left.sim_time > 0
        assert left.speed == right.speed == pytest.approx(t["speed"])
        for key in ("steer", "throttle", "brake"):
            assert getattr(left, key) == pytest.approx(t["control"][key])
            assert getattr(right, key) == pytest.approx(rows[left.frame]["replayed_control"][key])
        assert any(getattr(left, k) for k in ("steer", "throttle", "brake"))


def test_replay_needs_recorded_inputs(tmp_path, capsys):
    run = make_run(tmp_path / "run")
    assert main(["replay", str(run), "--out", str(tmp_path / "r")]) == 2
    assert "--record-inputs" in capsys.readouterr().err
    assert main(["replay", str(run), "--out", str(tmp_path / "r2"), "--tick-range", "9:3"]) == 2


def test_scene_inputs_round_trip_bit_exact(tmp_path):
    """Released-profile inputs (BEV camera crop + LiDAR histogram) come back exactly as the runtime got them."""
    import numpy as np

    from automot.agent.input_recorder import InputRecorder, RecordingRuntime
    from automot.debugging.replay import InputLog, Step, Submit
    from automot.runtime.types import DrivingObservation, DrivingState, RuntimeOutput

    class Echo:
        needs_scene_inputs = True

        def submit(self, obs, sim_time, frame):
            pass

        def step(self, state, sim_time, frame):
            return RuntimeOutput(np.full((20, 2), frame, np.float32), np.zeros((6, 2), np.float32), "go", None,
                                 1, frame, sim_time, 0, 0.0, 1.0)  # fmt: skip

        def stats(self):
            return {}

        def close(self):
            pass

    rng = np.random.default_rng(1)
    rt = RecordingRuntime(Echo(), InputRecorder(tmp_path / "inputs", {"history": {"buffer_len": 4}}, chunk_ticks=3))
    assert rt.needs_scene_inputs  # attributes reach the wrapped runtime
    images = [rng.integers(0, 255, (16, 32, 3), dtype=np.uint8) for _ in range(5)]
    sent = []
    for t in range(5):
        inputs = {
            "rgb": rng.integers(0, 256, (3, 8, 16)).astype(np.float32),
            "lidar": (rng.random((2, 8, 8)) * 300).round().astype(np.float32),
            "feat": rng.random((4,)).astype(np.float32),
        }
        rt.submit(DrivingObservation([images[max(t - 2, 0)], images[t]], np.eye(2, dtype=np.float32), 3.0), t * 0.05, t)
        rt.step(DrivingState(np.eye(2, dtype=np.float32), 3.0, scene_inputs=inputs), t * 0.05, t)
        sent.append(inputs)
    rt.close()
    log = InputLog(tmp_path / "inputs")
    assert [c["steps"] for c in log.manifest["chunks"]] == [3, 2] and log.manifest["complete"]
    events = list(log.events())
    steps = [e for e in events if isinstance(e, Step)]
    subs = [e for e in events if isinstance(e, Submit)]
    assert [e.tick for e in steps] == list(range(5)) and len(subs) == 5
    for step, inputs in zip(steps, sent):
        for name, arr in inputs.items():
            got = step.scene_inputs[name]
            assert got.dtype == arr.dtype and np.array_equal(got, arr)
        assert step.out["path"][0, 0] == step.tick
    assert np.array_equal(subs[4].images[0], images[2]) and np.array_equal(subs[4].images[1], images[4])


def test_recording_failure_never_stops_driving(tmp_path, caplog):
    from automot.agent.input_recorder import InputRecorder, RecordingRuntime

    class Runtime:
        def step(self, state, sim_time, frame):
            return "output"

        def close(self):
            pass

    rt = RecordingRuntime(Runtime(), InputRecorder(tmp_path / "inputs", {}))
    assert rt.step(object(), 0.0, 0) == "output"  # the recorder cannot read this state: logged, recording off
    assert rt._recorder is None and "input recording failed" in caplog.text
    assert rt.step(object(), 0.0, 1) == "output"
    rt.close()


def test_record_inputs_in_agent_config():
    from automot.agent.config import agent_config_from_dict
    from automot.agent.input_recorder import wanted

    assert agent_config_from_dict({"record_inputs": True}).record_inputs
    assert wanted(agent_config_from_dict({"record_inputs": True}))


# ---------------------------------------------------------------- Rerun export, read back with Rerun's own reader


def _read_rrd(path: Path) -> dict[str, list[dict]]:
    """entity path -> rows (column name -> value), through rerun.chunk.RrdReader."""
    chunk = pytest.importorskip("rerun.chunk")
    rows: dict[str, list[dict]] = {}
    for c in chunk.RrdReader(str(path)).stream():
        data = c.to_record_batch().to_pydict()
        names = list(data)
        rows.setdefault(c.entity_path, []).extend(dict(zip(names, vals)) for vals in zip(*data.values()))
    return rows


def test_view_real_drive_rrd(drive_run, tmp_path, capsys):
    pytest.importorskip("rerun")
    rrd = tmp_path / "run.rrd"
    assert main(["view", str(drive_run), "--save", str(rrd)]) == 0
    rows = _read_rrd(rrd)
    ticks = [json.loads(line) for line in (drive_run / "ticks.jsonl").read_text().splitlines()]
    for entity in ("/camera/image", "/camera/image/path", "/camera/image/waypoints", "/camera/image/targets",
                   "/bev/ego", "/bev/path", "/bev/driven", "/bev/route", "/scalars/speed", "/scalars/steer",
                   "/scalars/fast_step_ms", "/scalars/snapshot_age_ticks", "/events"):  # fmt: skip
        assert entity in rows, entity
    assert len(rows["/scalars/speed"]) == TICKS and len(rows["/bev/ego"]) == TICKS
    assert len(rows["/camera/image"]) == TICKS - 31  # the frames the model got (recorded inputs)
    assert len(rows["/scalars/fast_step_ms"]) == TICKS - 31
    # refresh latency of the snapshot each tick used: one value per snapshot version, the one ticks.jsonl holds
    refresh = {r["tick"]: r["Scalars:scalars"][0] for r in rows["/scalars/refresh_ms"]}
    assert len(refresh) == TICKS - 31 and all(v > 0 for v in refresh.values())
    by_version: dict[int, set] = {}
    for t in ticks[31:]:
        by_version.setdefault(t["snapshot"]["version"], set()).add(t["snapshot"]["refresh_ms"])
        assert refresh[t["frame"]] == pytest.approx(t["snapshot"]["refresh_ms"])
    assert len(by_version) > 1 and all(len(v) == 1 for v in by_version.values())
    by_tick = {r["tick"]: r for r in rows["/scalars/speed"]}
    assert by_tick[35]["Scalars:scalars"][0] == pytest.approx(ticks[35]["speed"])
    assert by_tick[35]["sim_time"].total_seconds() == pytest.approx(ticks[35]["sim_time"])
    steer = {r["tick"]: r["Scalars:scalars"][0] for r in rows["/scalars/steer"]}
    assert steer[38] == pytest.approx(ticks[38]["control"]["steer"])
    events = [(r["tick"], r["TextLog:text"][0]) for r in rows["/events"]]
    assert not any(text.startswith("INFRACTION") for _, text in events)  # a --ticks cap is no infraction
    assert any(text.startswith("decision: ") for _, text in events)


def test_view_hand_made_run_events(tmp_path):
    pytest.importorskip("rerun")
    run = make_run(tmp_path / "run", collision_tick=12)
    rrd = tmp_path / "hand.rrd"
    assert main(["view", str(run), "--save", str(rrd)]) == 0
    rows = _read_rrd(rrd)
    assert len(rows["/scalars/speed"]) == 20 and "/camera/image" not in rows
    events = {(r["tick"], r["TextLog:text"][0], r["TextLog:level"][0]) for r in rows["/events"]}
    assert any(
        t == 12 and text.startswith("INFRACTION collisions_vehicle") and lvl == "ERROR" for t, text, lvl in events
    )
    assert (11, "safe stop (stale_snapshot): stale snapshot", "WARN") in events


def test_replay_refuses_inputs_of_another_run(drive_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(drive_run, run)
    ticks = [json.loads(line) for line in (run / "ticks.jsonl").read_text().splitlines()]
    for t in ticks:
        if t["path"] is not None:
            t["path"] = [[x + 1.0, y] for x, y in t["path"]]
    (run / "ticks.jsonl").write_text("".join(json.dumps(t) + "\n" for t in ticks))
    assert main(["replay", str(run), "--out", str(tmp_path / "r")]) == 2
    assert "do not belong to this run" in capsys.readouterr().err


def test_released_profile_inputs_record_and_replay(tmp_path, monkeypatch, scene_kit):
    """The BEV encoder's inputs (camera crop + LiDAR histogram) of the released layout are recorded through the
    agent and replayed open loop to the same outputs."""
    import numpy as np
    import yaml

    from automot.agent.automot_agent import AutoMoTAgent
    from automot.debugging.replay import InputLog, Step, run_replay
    from automot.model.released.loader import ReleasedParts
    from automot.model.released.synthetic import build_tiny_released
    from automot.runtime import build_runtime

    model, bev = build_tiny_released(seed=5)
    model.released = ReleasedParts(bev, bev.cfg, "synthetic")
    run = tmp_path / "run"
    monkeypatch.setenv("AUTOMOT_RECORD_DIR", str(run))
    cfg_path = tmp_path / "agent.yaml"
    cfg = {"image_size": [128, 64], "recorder": {"video": False}, "control": {"safety": {"warmup_ticks": 3}}}
    cfg_path.write_text(yaml.safe_dump({**cfg, "state_estimator": "ukf", "record_inputs": True}))
    agent = AutoMoTAgent(runtime_factory=lambda c: build_runtime(model, mode="sync", engine="torch"))
    agent.set_global_plan(*scene_kit.creeping_plan())
    agent.setup(f"{cfg_path}+scene")
    specs = agent.sensors()
    try:
        for t in range(8):
            agent.run_step(scene_kit.creeping_inputs(specs, t), 0.05 * t)
            assert agent.last_record.error is None, agent.last_record.error
    finally:
        agent.destroy()
    log = InputLog(run / "inputs")
    assert log.manifest["scene_inputs"] and "histogram" in log.manifest["lidar_form"]
    steps = [e for e in log.events() if isinstance(e, Step)]
    assert len(steps) == 5 and set(steps[0].scene_inputs) == {"rgb", "lidar"}
    assert steps[0].scene_inputs["lidar"].shape[-2:] == (64, 64) and np.any(steps[0].scene_inputs["lidar"] > 0)
    report = run_replay(
        run, tmp_path / "replay", runtime_factory=lambda c: build_runtime(model, mode="sync", engine="torch")
    )
    assert report["ticks"] == 5 and report["decision_changes"] == 0
    assert report["max_abs_path_diff"] <= 1e-5 and report["max_abs_waypoint_diff"] <= 1e-5
