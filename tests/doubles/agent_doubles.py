"""Test doubles for the leaderboard agent, shared through the ``agent_kit`` fixture (tests/conftest.py).

Not a test module: a fake runtime, a global plan and synthetic ``input_data`` as the leaderboard hands them over,
an agent YAML writer and a factory for a set-up agent.
"""

from __future__ import annotations

import math

import numpy as np
import yaml

from automot.agent.automot_agent import AutoMoTAgent
from automot.agent.contract import Location, RoadOption, Rotation, Transform
from automot.agent.geometry import local_to_gps
from automot.runtime.types import DrivingObservation, DrivingState, RuntimeOutput

W, H = 64, 32  # small camera images keep the tests fast; the rig override is what a light world would use
GEOREF = (48.137, 11.575)  # non-default reference: the agent must solve it from the plan
STRAIGHT_ROUTE = [(0.0, 0.0), (50.0, 0.0), (100.0, 0.0), (150.0, 0.0)]


class FakeRuntime:
    """Runtime double: drives straight at ``cruise`` m/s and records what the agent sent."""

    def __init__(self, cruise: float = 6.0) -> None:
        self.cruise = cruise
        self.submits: list[tuple[DrivingObservation, float, int]] = []
        self.steps: list[tuple[DrivingState, float, int]] = []
        self.closed = False
        self.fail_next: Exception | None = None
        self.next_output: object | None = None

    def submit(self, obs: DrivingObservation, sim_time: float, frame: int) -> None:
        self.submits.append((obs, sim_time, frame))

    def step(self, state: DrivingState, sim_time: float, frame: int) -> RuntimeOutput:
        self.steps.append((state, sim_time, frame))
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        if self.next_output is not None:
            out, self.next_output = self.next_output, None
            return out
        s = np.arange(1, 21, dtype=np.float32)
        return RuntimeOutput(
            path=np.stack([s, np.zeros(20, np.float32)], axis=1),
            waypoints=np.stack(
                [np.arange(1, 7, dtype=np.float32) * 0.5 * self.cruise, np.zeros(6, np.float32)], axis=1
            ),
            decision_text="go straight",
            reasoning_text="clear road",
            snapshot_version=len(self.submits),
            snapshot_frame=frame,
            snapshot_sim_time=sim_time,
            age_ticks=0,
            age_s=0.0,
            fast_step_ms=1.0,
        )

    def stats(self) -> dict:
        return {"steps": len(self.steps)}

    def close(self) -> None:
        self.closed = True


def plan(points_xy: list[tuple[float, float]]) -> tuple[list, list]:
    """(GPS plan, world plan) through ``points_xy`` (CARLA x, y), GNSS about ``GEOREF``.

    Options alternate LANEFOLLOW / STRAIGHT so the leaderboard's downsample_route keeps every one of these sparse
    points (it keeps option changes; by distance it would drop a point reached in one 50 m step).
    """
    options = (RoadOption.LANEFOLLOW, RoadOption.STRAIGHT)
    world = [(Transform(Location(x, y, 0.0), Rotation()), options[i % 2]) for i, (x, y) in enumerate(points_xy)]
    gps = [
        ({"lat": lat, "lon": lon, "z": 0.0}, opt)
        for (lat, lon), (_, opt) in zip(
            local_to_gps(np.array(points_xy)[:, 0], np.array(points_xy)[:, 1], *GEOREF), world
        )
    ]
    return gps, world


def inputs(specs: list[dict], frame: int, xy=(0.0, 0.0), compass=math.pi / 2, speed=0.0) -> dict:
    """Synthetic input_data for ``specs``; compass pi/2 = facing east (+x); the camera's red channel is the frame."""
    lat, lon = local_to_gps(xy[0], xy[1], *GEOREF)
    data = {}
    for spec in specs:
        kind = spec["type"]
        if kind == "sensor.camera.rgb":
            img = np.zeros((spec["height"], spec["width"], 4), np.uint8)
            img[..., 2] = frame % 256  # red channel in BGRA order
            payload = img
        elif kind == "sensor.lidar.ray_cast":
            payload = np.random.default_rng(frame).normal(size=(100, 4)).astype(np.float32)
        elif kind == "sensor.other.gnss":
            payload = np.array([lat, lon, 0.5])
        elif kind == "sensor.other.imu":
            payload = np.array([0.1, 0.0, 9.81, 0.0, 0.0, 0.01, compass])
        else:
            payload = {"speed": speed}
        data[spec["id"]] = (frame, payload)
    return data


def agent_yaml(tmp_path, **overrides) -> str:
    """Write an agent config (W x H camera, small recorder, 3 warm-up ticks) with ``overrides`` merged per section."""
    cfg = {
        "image_size": [W, H],
        "recorder": {
            "video": False,
            "out_dir": str(tmp_path / "rec"),
            "video_height": 32,
            "panel_width": 32,
        },
        "control": {"safety": {"warmup_ticks": 3}},
    }
    for key, value in overrides.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    path = tmp_path / "agent.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def make_agent(
    tmp_path, runtime=None, route=None, save_name="route_0", **overrides
) -> tuple[AutoMoTAgent, FakeRuntime, list]:
    """A set-up agent on ``route`` (a plan from :func:`plan`, default: 150 m east) with a FakeRuntime.

    Returns (agent, runtime, sensor specs).
    """
    runtime = runtime or FakeRuntime()
    agent = AutoMoTAgent("localhost", 2000, False, runtime_factory=lambda cfg: runtime)
    agent.set_global_plan(*(route or plan(STRAIGHT_ROUTE)))
    agent.setup(f"{agent_yaml(tmp_path, **overrides)}+{save_name}")
    return agent, runtime, agent.sensors()


def is_full_brake(control) -> bool:
    return control.brake == 1.0 and control.throttle == 0.0
