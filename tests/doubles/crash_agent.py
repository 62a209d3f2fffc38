"""Leaderboard agent file for the seeded-collision tests (tests/debugging/test_collision_story.py).

Drives full throttle straight down its lane (steering back to the lane centre line y = LANE_Y) with the agent's real
Recorder (video + ticks.jsonl + world.jsonl), so it rear-ends the stopped car of :func:`crash_route`. At every tick
it also writes what the world itself says (ego and every other vehicle, from ``world.provider``, privileged) to
``truth.jsonl``, taken at the same moment as the recorder's snapshot, for the tests to check the debug files
against.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from automot.agent.config import RecorderConfig
from automot.agent.contract import AutonomousAgent, Track, make_control
from automot.agent.recorder import Recorder, TickRecord
from automot.agent.rigs import CAMERA, SensorSpec
from automot.world.provider import get_world

CAMERA_SPEC = SensorSpec("CAM_FRONT", CAMERA, x=-1.5, z=2.0, width=128, height=64, fov=110.0)
LANE_Y = 4.0  # highway-v0's lane 1 centre line


def get_entry_point() -> str:
    return "CrashAgent"


def crash_route(ticks: int = 140):
    """highway_lane_keep without traffic, plus one car stopped 40 m ahead of the ego in its lane."""
    import dataclasses

    from automot.world.routes import ExtraVehicle, load_route

    spec = load_route("highway_lane_keep")
    env = {**spec.env_config, "vehicles_count": 0}
    stopped = ExtraVehicle(lane=("0", "1", 1), s=spec.start_s + 40.0, speed=0.0, target_speed=0.0)
    return dataclasses.replace(spec, env_config=env, extra_vehicles=(stopped,), tick_limit=ticks)


class CrashAgent(AutonomousAgent):
    def setup(self, path_to_conf_file: str) -> None:
        self.track = Track.SENSORS
        self.out = Path(os.environ["AUTOMOT_RECORD_DIR"])
        self.recorder = Recorder(self.out, CAMERA_SPEC, RecorderConfig(video=True, video_height=256, panel_width=192))
        self.truth = (self.out / "truth.jsonl").open("w", encoding="utf-8")
        self.frame = -1

    def sensors(self) -> list[dict]:
        return [CAMERA_SPEC.to_dict(), {"type": "sensor.speedometer", "reading_frequency": 20, "id": "SPEED"}]

    def run_step(self, input_data: dict, timestamp: float) -> Any:
        self.frame += 1
        world = get_world()
        ego = world.ego_state()
        others = [
            {"id": a.id, "x": a.x, "y": a.y, "speed": a.speed, "length": a.length, "width": a.width}
            for a in world.actors()
        ]
        contact = [a.id for a in world.contacts()]
        self.truth.write(json.dumps({"frame": self.frame, "time": world.time, "ego": ego.__dict__,
                                     "ego_length": world.ego.LENGTH, "others": others, "contact": contact}) + "\n")  # fmt: skip
        steer = max(-0.3, min(0.3, 0.1 * (LANE_Y - ego.y) - 0.5 * ego.yaw))
        image = input_data["CAM_FRONT"][1][:, :, 2::-1]  # BGRA -> RGB
        rec = TickRecord(frame=self.frame, sim_time=timestamp, speed=ego.speed, steer=steer, throttle=1.0, brake=0.0,
                         control_mode="drive", image=image.copy())  # fmt: skip
        rec.ego_pose = (ego.x, ego.y, ego.yaw)
        self.recorder.record(rec)
        return make_control(throttle=1.0, steer=steer, brake=0.0)

    def destroy(self) -> None:
        self.recorder.close()
        self.truth.close()
