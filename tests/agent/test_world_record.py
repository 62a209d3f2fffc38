"""world.jsonl's CARLA source (agent/world_record.py) against a stand-in CarlaDataProvider, and the writer.

What is not tested here: a real CARLA server's map waypoints, traffic-light and stop-sign semantics.
"""

from __future__ import annotations

import json
import math
from types import SimpleNamespace as NS

import pytest

from automot.agent import world_record
from automot.agent.world_record import CarlaSource, WorldLog, read_world


def _vec(x=0.0, y=0.0, z=0.0):
    return NS(x=x, y=y, z=z)


class _Actor:
    def __init__(self, actor_id, type_id, x, y, yaw_deg, vx=0.0, vy=0.0, ext=(2.4, 1.0, 0.8), role=None):
        self.id, self.type_id = actor_id, type_id
        self.attributes = {"role_name": role} if role else {}
        self._tf = NS(location=_vec(x, y), rotation=NS(yaw=yaw_deg))
        self._v = _vec(vx, vy)
        self.bounding_box = NS(extent=_vec(*ext))

    def get_transform(self):
        return self._tf

    def get_velocity(self):
        return self._v

    def get_traffic_light(self):
        return NS(id=55, get_state=lambda: "Red")


class _Actors(list):
    def filter(self, pattern):
        prefix = pattern.rstrip("*").rstrip(".")
        return _Actors(a for a in self if a.type_id.startswith(prefix))


class _Waypoint:
    def __init__(self, x, y):
        self.transform = NS(location=_vec(x, y))
        self.x, self.y = x, y

    def next(self, d):
        return [_Waypoint(self.x + d, self.y)]

    def previous(self, d):
        return [_Waypoint(self.x - d, self.y)]

    def get_left_lane(self):
        return None

    def get_right_lane(self):
        return None


def _provider(actors):
    world = NS(get_actors=lambda: _Actors(actors), get_map=lambda: NS(get_waypoint=lambda loc: _Waypoint(loc.x, loc.y)))
    return NS(get_world=lambda: world)


def test_carla_snapshot_relative_to_the_hero(tmp_path):
    hero = _Actor(1, "vehicle.lincoln.mkz", 10.0, 5.0, 90.0, vx=0.0, vy=8.0, role="hero")  # heading +y at 8 m/s
    ahead = _Actor(7, "vehicle.audi.tt", 10.0, 25.0, 90.0, vx=0.0, vy=3.0)  # 20 m ahead, 3 m/s
    right = _Actor(8, "walker.pedestrian.0001", 6.0, 5.0, 0.0, ext=(0.3, 0.3, 0.9))  # -x world = the hero's right
    far = _Actor(9, "vehicle.tesla.model3", 200.0, 5.0, 0.0)
    sign = _Actor(20, "traffic.stop", 10.0, 15.0, 0.0)
    source = CarlaSource(_provider([hero, ahead, right, far, sign]))
    snap = source.snapshot(60.0)
    assert snap["ego"]["speed"] == pytest.approx(8.0) and snap["ego"]["yaw"] == pytest.approx(math.pi / 2, abs=1e-4)
    by_id = {a["id"]: a for a in snap["actors"]}
    assert set(by_id) == {7, 8}
    # in a CARLA (left-handed) frame with yaw 90 deg, forward is +y and right is -x
    assert by_id[7]["rel"] == pytest.approx([20.0, 0.0, -5.0, 0.0], abs=1e-3)
    assert by_id[8]["rel"][:2] == pytest.approx([0.0, 4.0], abs=1e-3)
    assert by_id[7]["length"] == pytest.approx(4.8) and by_id[8]["type"].startswith("walker.")
    assert snap["traffic_light"] == {"id": 55, "state": "Red"}
    assert snap["stop_sign"] == {"id": 20, "distance": 10.0}
    (lane,) = snap["lane_lines"]  # the stand-in map's lane runs along +x through the hero, 2 m per waypoint
    assert lane[0][0] <= 10.0 - 30.0 + 2.0 and lane[-1][0] >= 10.0 + 60.0 - 2.0 and {p[1] for p in lane} == {5.0}

    log = WorldLog(tmp_path, radius=60.0)
    log.record(0, 0.0, source)
    log.record(1, 0.05, source)
    log.close()
    header, ticks = read_world(tmp_path / world_record.WORLD_NAME)
    assert header is None and sorted(ticks) == [0, 1] and ticks[1]["sim_time"] == 0.05
    assert json.loads((tmp_path / "world.jsonl").read_text().splitlines()[0])["kind"] == "tick"


def test_a_failing_source_stops_the_world_log_not_the_drive(tmp_path):
    class Broken:
        def header(self):
            return None

        def snapshot(self, radius):
            raise RuntimeError("provider gone")

    log = WorldLog(tmp_path)
    assert log.record(0, 0.0, Broken()) is None and log.error == "RuntimeError: provider gone"
    assert log.record(1, 0.05, Broken()) is None and log.lines == 0
