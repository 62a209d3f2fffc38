"""Property-based fuzzing of ``run_step`` on the tiny demo model (checkpoints/tiny_demo, demo_tiny.yaml).

Every tick, whatever the sensors say: run_step returns (never raises) a valid control (finite, steer in [-1, 1],
throttle and brake in [0, 1]); when it brakes, the record names why (control mode, plus the safe-stop reason or
the error); input problems it drives through are flagged; ticks.jsonl has one valid JSON line per tick.
Deterministic (derandomize) and short: 25 examples of 4-12 ticks (a few seconds on 2 CPU cores).
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings  # the dev extra installs it
from hypothesis import strategies as st

from automot.agent.automot_agent import AutoMoTAgent

ROOT = Path(__file__).resolve().parents[2]
DT = 0.05
SENSORS = ("CAM_FRONT", "LIDAR", "IMU", "GPS", "SPEED")
BRAKE_MODES = {"warmup", "safe_stop", "error", "brake", "speed_cap", "hold"}  # agent/control.py + the agent

any_float = st.floats(allow_nan=True, allow_infinity=True)
odd_value = st.one_of(
    any_float,
    st.complex_numbers(allow_nan=True, allow_infinity=True),
    st.sampled_from([None, "fast", [1.0], {"x": 1}]),
)
tick_strategy = st.fixed_dictionaries(
    {
        "advance": st.floats(0.0, 1.5),  # metres along the route since the last tick (a plausible GNSS track)
        "speed": st.one_of(st.floats(0.0, 25.0), st.floats(-30.0, 0.0), odd_value),
        "gps": st.one_of(
            st.just("good"),
            st.just("good"),
            st.tuples(st.just("jump"), st.floats(-5e4, 5e4), st.floats(-5e4, 5e4)),
            st.tuples(any_float, any_float, any_float),
            st.tuples(st.complex_numbers(max_magnitude=100.0), st.just(11.5), st.just(0.5)),
            odd_value,
        ),
        "compass": st.one_of(st.floats(0.0, 2 * math.pi), any_float),
        "timestamp": st.one_of(st.just("good"), st.just("good"), any_float, st.none(), st.just("t")),
        "drop": st.one_of(st.none(), st.none(), st.none(), st.sampled_from(SENSORS)),
        "image": st.sampled_from(["good", "good", "good", "rgb", "small", "float"]),
    }
)


@pytest.fixture(scope="module")
def demo_yaml(tmp_path_factory):
    """demo_tiny.yaml as shipped, on CPU, without video, 2 warm-up ticks, recording into a temporary folder."""
    cfg = yaml.safe_load((ROOT / "leaderboard_configs" / "demo_tiny.yaml").read_text())
    out = tmp_path_factory.mktemp("fuzz")
    cfg["model"].update(checkpoint=str(ROOT / "checkpoints" / "tiny_demo"), device="cpu")
    cfg["recorder"].update(video=False, out_dir=str(out / "rec"))
    cfg["control"]["safety"]["warmup_ticks"] = 2
    path = out / "agent.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, out / "rec"


_names = itertools.count()


def _gps_value_unusable(gps: object) -> bool:
    """A 3-tuple whose values the agent must refuse (and flag): complex, non-finite or out of range."""
    if not isinstance(gps, tuple) or len(gps) != 3 or gps[0] == "jump":
        return False
    if any(isinstance(v, complex) for v in gps):
        return True
    lat, lon, alt = gps
    return not (all(math.isfinite(v) for v in gps) and -90.0 < lat < 90.0 and -180.0 <= lon <= 180.0)


def _input_data(kit, specs, t: int, x: float, tick: dict) -> dict:
    speed = tick["speed"]
    good_speed = isinstance(speed, float) and math.isfinite(speed)
    data = kit.inputs(specs, t, xy=(x, 0.0), compass=math.pi / 2, speed=speed if good_speed else 0.0)
    if not good_speed:
        data["SPEED"] = (t, {"speed": speed})
    gps = tick["gps"]
    if isinstance(gps, tuple) and gps and gps[0] == "jump":
        data = {**data, "GPS": kit.inputs(specs, t, xy=(x + gps[1], gps[2]))["GPS"]}
    elif gps != "good":
        data["GPS"] = (t, np.array(gps) if isinstance(gps, tuple) else gps)
    imu = data["IMU"][1].copy()
    imu[6] = tick["compass"]
    data["IMU"] = (t, imu)
    spec = next(s for s in specs if s["id"] == "CAM_FRONT")
    if tick["image"] == "rgb":
        data["CAM_FRONT"] = (t, np.zeros((spec["height"], spec["width"], 3), np.uint8))
    elif tick["image"] == "small":
        data["CAM_FRONT"] = (t, np.zeros((8, 8, 4), np.uint8))
    elif tick["image"] == "float":
        data["CAM_FRONT"] = (t, np.zeros((spec["height"], spec["width"], 4), np.float32))
    if tick["drop"] is not None:
        data.pop(tick["drop"])
    return data


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(ticks=st.lists(tick_strategy, min_size=4, max_size=12))
def test_run_step_always_returns_a_valid_control_and_says_why_it_brakes(demo_yaml, agent_kit, ticks):
    config_path, rec_dir = demo_yaml
    save_name = f"fuzz_{next(_names)}"
    agent = AutoMoTAgent("localhost", 2000)
    agent.set_global_plan(*agent_kit.plan(agent_kit.STRAIGHT_ROUTE))
    agent.setup(f"{config_path}+{save_name}")
    specs = agent.sensors()
    x = 0.0
    try:
        for t, tick in enumerate(ticks):
            x += tick["advance"]
            stamp = t * DT if tick["timestamp"] == "good" else tick["timestamp"]
            control = agent.run_step(_input_data(agent_kit, specs, t, x, tick), stamp)
            values = (float(control.steer), float(control.throttle), float(control.brake))
            assert all(math.isfinite(v) for v in values), values
            assert -1.0 <= values[0] <= 1.0 and 0.0 <= values[1] <= 1.0 and 0.0 <= values[2] <= 1.0, values
            rec = agent.last_record
            assert rec.frame == t
            if values[2] > 0.0:
                assert rec.control_mode in BRAKE_MODES, rec.control_mode
                if rec.control_mode == "safe_stop":
                    assert rec.safe_stop and rec.safe_stop_reason, rec
                if rec.control_mode == "error":
                    assert rec.error, rec
                if rec.control_mode == "brake":  # the model's own plan asks to slow down
                    assert rec.waypoints is not None and not rec.safe_stop
            if rec.error is None:
                speed = tick["speed"]
                if isinstance(speed, float) and speed < 0.0:
                    assert any("negative speed" in f for f in rec.input_flags)
                if _gps_value_unusable(tick["gps"]):
                    assert any("GNSS fix unusable" in f for f in rec.input_flags), (tick["gps"], rec.input_flags)
    finally:
        agent.destroy()
    rows = [json.loads(line) for line in (rec_dir / save_name / "ticks.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in rows] == list(range(len(ticks)))
