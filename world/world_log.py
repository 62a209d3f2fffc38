"""The embedded world's source for the debug ``world.jsonl`` (format: agent/world_record.py).

``world.runner.run_route`` registers an :class:`EmbeddedSource` for the route while it drives; the agent's recorder
asks it for a snapshot inside ``run_step``, i.e. of the state the tick's sensors were rendered from, before the tick's
control is applied. Read from the simulation state directly; nothing of it reaches the agent's model.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from automot.agent.world_record import actor_entry
from automot.world.sim import EmbeddedWorld

LANE_STEP_M = 2.0  # lane centre lines sampled this finely in the map header


def lane_id(index: tuple) -> str:
    """highway-env's lane index (from, to, i) as one string."""
    return f"{index[0]}>{index[1]}#{index[2]}"


class EmbeddedSource:
    """Snapshots of an :class:`EmbeddedWorld` (ground truth)."""

    def __init__(self, world: EmbeddedWorld) -> None:
        self.world = world
        self._lanes: dict[str, np.ndarray] = {}
        graph = world.network.graph
        for start, ends in graph.items():
            for end, lanes in ends.items():
                for i, lane in enumerate(lanes):
                    n = max(2, int(math.ceil(lane.length / LANE_STEP_M)) + 1)
                    s = np.linspace(0.0, lane.length, n)
                    self._lanes[lane_id((start, end, i))] = np.array([lane.position(v, 0.0) for v in s])
        # every sample in one array, so a tick's "lanes near the ego" is one vectorised distance test
        self._names = list(self._lanes)
        self._points = np.concatenate([self._lanes[k] for k in self._names]) if self._names else np.zeros((0, 2))
        self._owner = np.concatenate([np.full(len(self._lanes[k]), i) for i, k in enumerate(self._names)]) if (
            self._names
        ) else np.zeros(0, int)  # fmt: skip

    def header(self) -> dict[str, Any]:
        return {
            "lanes": {k: np.round(v, 2).tolist() for k, v in self._lanes.items()},
            "route": np.round(self.world.path.points, 2).tolist(),
        }

    def snapshot(self, radius: float) -> dict[str, Any]:
        world = self.world
        e = world.ego_state()
        ego = {
            "x": round(e.x, 4),
            "y": round(e.y, 4),
            "yaw": round(e.yaw, 5),
            "speed": round(e.speed, 4),
            "length": float(world.ego.LENGTH),
            "width": float(world.ego.WIDTH),
        }
        actors = [
            actor_entry(a.id, a.type_id, a.x, a.y, a.yaw, a.speed, (a.length, a.width, a.height), ego)
            for a in world.actors(max_range=radius)
        ]
        d2 = (self._points[:, 0] - e.x) ** 2 + (self._points[:, 1] - e.y) ** 2
        lanes = [self._names[i] for i in np.unique(self._owner[d2 <= radius * radius])]
        contacts = [a.id for a in world.contacts()]  # boxes overlapping the ego's now (the scorer's collisions)
        return {"ego": ego, "actors": actors, "lanes": lanes, "contacts": contacts}
