"""The leaderboard agent end to end with a fake runtime: lifecycle, fuzzed inputs, Bench2Drive outputs."""

from __future__ import annotations

import json
import logging
import math

import cv2
import imageio.v2 as imageio
import numpy as np
import pytest

from automot.agent.automot_agent import AutoMoTAgent, get_entry_point
from automot.agent.config import agent_config_from_dict
from automot.agent.runtime_factory import build_runtime
from automot.runtime.types import RuntimeOutput


def test_entry_point_names_an_agent_the_leaderboard_can_build():
    """The evaluator does ``getattr(module, module.get_entry_point())(host, port, debug)`` and checks the track."""
    from automot.agent import automot_agent
    from automot.agent.contract import AutonomousAgent, Track

    cls = getattr(automot_agent, get_entry_point())
    assert cls is AutoMoTAgent and issubclass(cls, AutonomousAgent)
    agent = cls("localhost", 2000, False)
    assert agent.track == Track.SENSORS
    assert all(callable(getattr(agent, name)) for name in ("setup", "sensors", "run_step", "destroy"))


def test_full_lifecycle_with_release_warmup(tmp_path, agent_kit):
    runtime = agent_kit.FakeRuntime()
    agent = AutoMoTAgent("localhost", 2000, False, runtime_factory=lambda cfg: runtime)
    agent.set_global_plan(*agent_kit.plan([(0.0, 0.0), (50.0, 0.0), (100.0, 3.0), (150.0, 3.0)]))
    agent.setup(
        f"{agent_kit.agent_yaml(tmp_path, control={'safety': {'warmup_ticks': 31}}, recorder={'video': True, 'video_queue': 64})}+lifecycle"
    )
    specs = agent.sensors()
    assert [s["id"] for s in specs] == ["CAM_FRONT", "LIDAR", "IMU", "GPS", "SPEED"]
    assert specs[0]["width"] == agent_kit.W and specs[0]["height"] == agent_kit.H
    controls = [agent.run_step(agent_kit.inputs(specs, t, xy=(0.05 * t, 0.0)), 0.05 * t) for t in range(40)]
    agent.destroy()

    assert all(agent_kit.is_full_brake(c) and c.steer == 0.0 for c in controls[:31])
    assert [frame for _, _, frame in runtime.submits] == list(range(31, 40)) == [f for _, _, f in runtime.steps]
    assert all(c.throttle > 0.3 and c.brake == 0.0 for c in controls[31:])
    assert runtime.closed
    assert agent.georeference == pytest.approx(agent_kit.GEOREF, abs=1e-7)  # solved from the plan by fsolve

    obs, sim_time, frame = runtime.submits[0]
    assert sim_time == pytest.approx(0.05 * 31) and len(obs.images) == 4
    assert all(img.shape == (agent_kit.H, agent_kit.W, 3) and img.dtype == np.uint8 for img in obs.images)
    # Oldest first at t-15, t-10, t-5, t; the red channel carries the frame number (BGRA -> RGB).
    assert [int(img[0, 0, 0]) for img in obs.images] == [16, 21, 26, 31]
    assert int(obs.images[-1][0, 0, 2]) == 0
    tps = obs.target_points
    assert tps.shape == (2, 2)
    np.testing.assert_allclose(tps[0], [50.0 - 0.05 * 31, 0.0], atol=0.05)  # straight ahead in the ego frame
    np.testing.assert_allclose(tps[1], [100.0 - 0.05 * 31, 3.0], atol=0.05)  # +y = right of the ego
    assert runtime.steps[0][0].speed == 0.0 and np.array_equal(runtime.steps[0][0].target_points, tps)

    route_dir = tmp_path / "rec" / "lifecycle"
    rows = [json.loads(line) for line in (route_dir / "ticks.jsonl").read_text().splitlines()]
    assert len(rows) == 40 and rows[0]["warmup"] and rows[35]["decision"] == "go straight"
    reader = imageio.get_reader(str(route_dir / "video.mp4"))
    assert sum(1 for _ in reader.iter_data()) == 40
    reader.close()
    summary = json.loads((route_dir / "summary.jsonl").read_text())
    assert summary["runtime_stats"] == {"steps": 9} and summary["save_name"] == "lifecycle"


def test_target_point_turns_with_heading(tmp_path, agent_kit):
    agent, runtime, specs = agent_kit.make_agent(
        tmp_path, route=agent_kit.plan([(0.0, 0.0), (0.0, 60.0), (0.0, 120.0)])
    )
    for t in range(5):  # facing east; the route heads south (+y), i.e. to the right
        agent.run_step(agent_kit.inputs(specs, t), 0.05 * t)
    np.testing.assert_allclose(runtime.steps[-1][0].target_points, [[0.0, 60.0], [0.0, 120.0]], atol=0.05)
    agent.run_step(agent_kit.inputs(specs, 5, compass=math.pi), 0.25)  # facing south: now straight ahead
    np.testing.assert_allclose(runtime.steps[-1][0].target_points, [[60.0, 0.0], [120.0, 0.0]], atol=0.05)
    agent.destroy()


def _fuzz(w: int, h: int) -> dict:
    """Bad-input cases for a w x h camera: name -> mutation of a good input_data dict."""
    return {
        # (a NaN / complex GNSS *value* does not brake: the fix is ignored and flagged, tests/agent/test_input_flags.py)
        "gps_short": lambda d: d.__setitem__("GPS", (1, np.array([48.1, 11.5]))),
        "missing_speed": lambda d: d.pop("SPEED"),
        "image_rgb_not_bgra": lambda d: d.__setitem__("CAM_FRONT", (1, np.zeros((h, w, 3), np.uint8))),
        "image_wrong_size": lambda d: d.__setitem__("CAM_FRONT", (1, np.zeros((h * 2, w, 4), np.uint8))),
        "image_float": lambda d: d.__setitem__("CAM_FRONT", (1, np.zeros((h, w, 4), np.float32))),
        "none_payload": lambda d: d.__setitem__("IMU", (1, None)),
        "none_entry": lambda d: d.__setitem__("LIDAR", None),
        "bare_payload": lambda d: d.__setitem__("SPEED", {"speed": 1.0}),
        "speed_string": lambda d: d.__setitem__("SPEED", (1, {"speed": "fast"})),
        "speed_nan": lambda d: d.__setitem__("SPEED", (1, {"speed": float("nan")})),
        "imu_short": lambda d: d.__setitem__("IMU", (1, np.zeros(3))),
        "imu_nan_gyro": lambda d: d.__setitem__("IMU", (1, np.array([0, 0, 9.8, np.nan, 0, 0, 1.0]))),
        "lidar_wrong_cols": lambda d: d.__setitem__("LIDAR", (1, np.zeros((10, 3), np.float32))),
        "gps_string": lambda d: d.__setitem__("GPS", (1, "48.1,11.5")),
    }


FUZZ_CASES = sorted(_fuzz(1, 1))


@pytest.mark.parametrize("case", FUZZ_CASES)
def test_fuzzed_inputs_brake_without_raising(tmp_path, case, caplog, agent_kit):
    agent, runtime, specs = agent_kit.make_agent(tmp_path)
    for t in range(4):
        control = agent.run_step(agent_kit.inputs(specs, t), 0.05 * t)
    assert control.throttle > 0  # driving before the bad tick
    bad = agent_kit.inputs(specs, 4)
    _fuzz(agent_kit.W, agent_kit.H)[case](bad)
    with caplog.at_level(logging.ERROR, logger="automot.agent.automot_agent"):
        control = agent.run_step(bad, 0.2)
    assert agent_kit.is_full_brake(control)
    assert agent.last_record.error and "run_step failed" in caplog.text
    control = agent.run_step(agent_kit.inputs(specs, 5), 0.25)  # recovers on the next good tick
    assert control.throttle > 0 and agent.last_record.error is None
    agent.destroy()


@pytest.mark.parametrize("payload", [None, [], "garbage", {"CAM_FRONT": 3}])
def test_garbage_input_data_brakes(tmp_path, payload, agent_kit):
    agent, _, _ = agent_kit.make_agent(tmp_path)
    for t in range(5):
        assert agent_kit.is_full_brake(agent.run_step(payload, 0.05 * t))
    agent.destroy()


def test_error_names_sensor_expected_and_got(tmp_path, caplog, agent_kit):
    agent, _, specs = agent_kit.make_agent(tmp_path)
    bad = agent_kit.inputs(specs, 0)
    bad["CAM_FRONT"] = (0, np.zeros((agent_kit.H, agent_kit.W, 3), np.uint8))
    agent.run_step(bad, 0.0)
    assert (
        "input 'CAM_FRONT': expected uint8 BGRA array (32, 64, 4), got uint8 array (32, 64, 3)"
        in agent.last_record.error
    )
    agent.destroy()


def test_nan_compass_is_guarded_not_fatal(tmp_path, agent_kit):
    agent, runtime, specs = agent_kit.make_agent(tmp_path)
    for t in range(4):
        agent.run_step(agent_kit.inputs(specs, t), 0.05 * t)
    before = runtime.steps[-1][0].target_points.copy()
    control = agent.run_step(agent_kit.inputs(specs, 4, compass=float("nan")), 0.2)
    assert agent.last_record.error is None and control.throttle > 0
    # NaN reuses the last valid compass, so the target point does not swing round.
    np.testing.assert_allclose(runtime.steps[-1][0].target_points, before, atol=1e-4)
    fresh, fresh_rt, specs = agent_kit.make_agent(tmp_path / "fresh", save_name="fresh")
    fresh.run_step(agent_kit.inputs(specs, 0, compass=float("nan")), 0.0)  # first frame NaN: compass 0 (north)
    assert fresh.last_record.error is None
    # Facing north, the route point 50 m east lies 50 m to the right.
    np.testing.assert_allclose(fresh.last_record.target_points[0], [0.0, 50.0], atol=0.05)
    agent.destroy()
    fresh.destroy()


def test_empty_global_plan_brakes(tmp_path, agent_kit):
    agent, runtime, specs = agent_kit.make_agent(tmp_path, route=([], []))
    controls = [agent.run_step(agent_kit.inputs(specs, t), 0.05 * t) for t in range(6)]
    assert all(agent_kit.is_full_brake(c) for c in controls) and not runtime.steps
    assert "empty plan" in agent.last_record.error
    agent.destroy()


def test_runtime_failures_and_safe_stop(tmp_path, caplog, agent_kit):
    agent, runtime, specs = agent_kit.make_agent(tmp_path)
    for t in range(4):
        agent.run_step(agent_kit.inputs(specs, t), 0.05 * t)
    runtime.fail_next = RuntimeError("CUDA out of memory")
    assert agent_kit.is_full_brake(agent.run_step(agent_kit.inputs(specs, 4), 0.2))
    assert "CUDA out of memory" in agent.last_record.error

    runtime.next_output = RuntimeOutput.stop("snapshot 0.9 s old")
    with caplog.at_level(logging.WARNING, logger="automot.agent.automot_agent"):
        assert agent_kit.is_full_brake(agent.run_step(agent_kit.inputs(specs, 5), 0.25))
    assert "snapshot 0.9 s old" in caplog.text
    assert agent.last_record.safe_stop and agent.last_record.control_mode == "safe_stop"

    bad = RuntimeOutput.stop("x")
    runtime.next_output = RuntimeOutput(**{**bad.__dict__, "path": np.full((20, 2), np.nan), "safe_stop": False})
    assert agent_kit.is_full_brake(agent.run_step(agent_kit.inputs(specs, 6), 0.3))
    assert "invalid runtime path" in agent.last_record.safe_stop_reason

    runtime.next_output = {"path": [1, 2]}
    assert agent_kit.is_full_brake(agent.run_step(agent_kit.inputs(specs, 7), 0.35))
    assert agent.run_step(agent_kit.inputs(specs, 8), 0.4).throttle > 0
    agent.destroy()


def test_strict_mode_reraises(tmp_path, agent_kit):
    agent, _, specs = agent_kit.make_agent(tmp_path, strict=True)
    bad = agent_kit.inputs(specs, 0)
    bad.pop("GPS")
    with pytest.raises(ValueError, match="input 'GPS'"):
        agent.run_step(bad, 0.0)
    agent.destroy()


def test_bench2drive_outputs(tmp_path, monkeypatch, agent_kit):
    save_path = tmp_path / "b2d"
    monkeypatch.setenv("SAVE_PATH", str(save_path))
    agent, runtime, specs = agent_kit.make_agent(
        tmp_path, save_name="RouteScenario_1_Town01_X_00_01_02_03_04_05", recorder={"out_dir": None}
    )
    for t in range(6):
        agent.run_step(agent_kit.inputs(specs, t, xy=(0.1 * t, 0.0), speed=2.0), 0.05 * t)
    bad = agent_kit.inputs(specs, 6)
    bad.pop("GPS")
    agent.run_step(bad, 0.3)
    agent.destroy()

    route = save_path / "RouteScenario_1_Town01_X_00_01_02_03_04_05"
    metric = json.loads((route / "metric_info.json").read_text())
    assert sorted(metric, key=int) == [str(i) for i in range(6)]  # the failed tick has no state estimate
    first = metric["0"]
    assert set(first) == {"acceleration", "angular_velocity", "forward_vector", "right_vector", "location", "rotation"}
    np.testing.assert_allclose(first["forward_vector"], [1.0, 0.0, 0.0], atol=1e-6)  # facing east
    np.testing.assert_allclose(metric["5"]["location"][:2], [0.5, 0.0], atol=0.01)
    img = cv2.imread(str(route / "rgb_front" / "0003.png"))
    assert (
        img.shape == (agent_kit.H, agent_kit.W, 3) and int(img[0, 0, 2]) == 3
    )  # saved as an RGB image of the front camera
    meta = json.loads((route / "meta" / "0004.json").read_text())
    assert {"steer", "throttle", "brake", "speed"} <= set(meta) and meta["speed"] == 2.0
    assert meta["decision"] == "go straight" and meta["snapshot_age_s"] == 0.0 and meta["fast_step_ms"] == 1.0
    assert json.loads((route / "meta" / "0006.json").read_text())["error"].startswith("InputError")
    assert len(list((route / "ticks.jsonl").read_text().splitlines())) == 7  # recorder shares the route folder


def test_metric_info_hook(tmp_path, monkeypatch, agent_kit):
    monkeypatch.setenv("SAVE_PATH", str(tmp_path / "b2d"))
    runtime = agent_kit.FakeRuntime()
    agent = AutoMoTAgent("h", 1, runtime_factory=lambda cfg: runtime, metric_info_fn=lambda: {"location": [1, 2, 3]})
    agent.set_global_plan(*agent_kit.plan([(0.0, 0.0), (50.0, 0.0)]))
    agent.setup(f"{agent_kit.agent_yaml(tmp_path)}+hooked")
    agent.run_step(agent_kit.inputs(agent.sensors(), 0), 0.0)
    agent.destroy()
    assert json.loads((tmp_path / "b2d" / "hooked" / "metric_info.json").read_text()) == {"0": {"location": [1, 2, 3]}}


def test_bench2drive_6cam_rig_runs(tmp_path, agent_kit):
    agent, runtime, specs = agent_kit.make_agent(tmp_path, rig="bench2drive-6cam")
    assert sum(s["type"] == "sensor.camera.rgb" for s in specs) == 6
    for t in range(5):
        control = agent.run_step(agent_kit.inputs(specs, t), 0.05 * t)
    assert control.throttle > 0 and len(runtime.submits[-1][0].images) == 4
    agent.destroy()


def test_setup_errors_are_raised(tmp_path, agent_kit):
    agent = AutoMoTAgent("localhost", 2000, runtime_factory=lambda cfg: object())
    with pytest.raises(TypeError, match="submit, step, stats, close"):
        agent.setup(agent_kit.agent_yaml(tmp_path))
    bad = tmp_path / "bad.yaml"
    bad.write_text("runtime: {mode: fast}\n")
    with pytest.raises(ValueError, match="runtime.mode"):
        AutoMoTAgent("localhost", 2000, runtime_factory=lambda cfg: agent_kit.FakeRuntime()).setup(str(bad))
    before_setup = AutoMoTAgent("localhost", 2000)
    assert agent_kit.is_full_brake(before_setup.run_step({}, 0.0))


def test_config_reaches_the_runtime(monkeypatch):
    from automot.agent import runtime_factory

    # The real factory on the tiny preset: the agent's model / runtime sections must end up in the runtime it builds.
    monkeypatch.setattr(runtime_factory, "_model_cache", {})
    cfg = agent_config_from_dict(
        {
            "model": {"preset": "tiny", "device": "cpu"},
            "runtime": {
                "mode": "sync",
                "sync_every": 3,
                "max_snapshot_age_s": 0.5,
                "options": {"max_snapshot_age_ticks": 7},
            },
        }
    )
    first = build_runtime(cfg)
    second = build_runtime(cfg)  # the next route: the model comes from the cache, not a second build
    try:
        rc = first.config
        assert (rc.mode, rc.engine, rc.sync_every, rc.max_snapshot_age_s, rc.max_snapshot_age_ticks) == (
            "sync",
            "torch",
            3,
            0.5,
            7,
        )
        assert first.model.config.name == "tiny" and first.device.type == "cpu"
        assert second.model is first.model and second is not first
    finally:
        first.close()
        second.close()


@pytest.mark.slow
def test_agent_drives_with_the_real_tiny_runtime(tmp_path, agent_kit):
    """Integration: the default factory builds the tiny model and the sync runtime; no errors, no safe stops."""
    agent = AutoMoTAgent("localhost", 2000)
    agent.set_global_plan(*agent_kit.plan([(0.0, 0.0), (50.0, 0.0), (100.0, 0.0)]))
    agent.setup(agent_kit.agent_yaml(tmp_path, model={"device": "cpu"}, runtime={"mode": "sync", "engine": "torch"}))
    specs = agent.sensors()
    controls = [agent.run_step(agent_kit.inputs(specs, t), 0.05 * t) for t in range(7)]
    stats = agent.runtime.stats()
    agent.destroy()
    rows = [json.loads(line) for line in (tmp_path / "rec" / agent.save_name / "ticks.jsonl").read_text().splitlines()]
    assert len(rows) == 7 and not any(r["error"] for r in rows)
    assert stats["steps"] == 4 and stats["refreshes"] >= 2
    assert all(len(r["path"]) == 20 and len(r["waypoints"]) == 6 for r in rows[3:])
    # What run_step returned is what the recorder logged; the 3 warm-up ticks are full brakes without a plan.
    for c, row in zip(controls, rows):
        assert (row["control"]["steer"], row["control"]["throttle"], row["control"]["brake"]) == pytest.approx(
            (c.steer, c.throttle, c.brake)
        )
    assert all(agent_kit.is_full_brake(c) and c.steer == 0.0 and rows[t]["warmup"] for t, c in enumerate(controls[:3]))
    assert not any(r["warmup"] for r in rows[3:])
