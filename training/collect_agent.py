"""Leaderboard agent file that drives the privileged expert and records a training episode.

Run by ``world.runner.run_route`` (``training/collect.py`` does that), so the expert is scored like any agent
and the camera frames are exactly what the agent's rig receives (``input_data`` BGRA -> RGB). ``setup`` takes a
JSON file with: dataset root, episode name, rig name, optional image size, ``frame_every`` / ``sample_every``
(ticks) and ``qa``. Per tick it keeps the true ego pose, speed and lane; frames are written as they come; at
``destroy`` the samples (which need the future) are computed and written:

- waypoints and decisions from the recorded 20 Hz pose track (``training/data/trajectory.py``), lane changes
  from the true lane index (a change of lane id while staying on the same road);
- the path from the privileged route centreline, every metre from the ego's projection (so the path is defined
  when standing still and recovers towards the lane centre);
- target points from the agent's own RoutePlanner on the downsampled global plan, fed with the true position;
- scene Q/A from the true traffic (``training/data/scene_qa.py``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from automot.agent.contract import road_option_value, transform_xy
from automot.agent.rigs import CAMERA, SPEEDOMETER, get_rig
from automot.agent.route_planner import RoutePlanner
from automot.geometry import world_to_ego
from automot.training.data.automot_format import DatasetWriter, EpisodeWriter, read_meta
from automot.training.data.scene_qa import SceneObject, scene_qa
from automot.training.data.schema import NUM_ROUTE_POINTS, PATH_SPACING
from automot.training.data.trajectory import PoseTrack, sample_at
from automot.world.expert_agent import ExpertAgent
from automot.world.provider import get_world


def get_entry_point() -> str:
    return "CollectorAgent"


class CollectorAgent(ExpertAgent):
    """The privileged expert plus an episode recorder."""

    def setup(self, path_to_conf_file: str) -> None:
        super().setup(path_to_conf_file)
        # The world passes Bench2Drive's ``CONFIG+save_name`` string; the config is the text before the first '+'.
        conf = json.loads(Path(path_to_conf_file.partition("+")[0]).read_text())
        self.conf = conf
        size = conf.get("image_size")
        self.rig = get_rig(conf["rig"], tuple(size) if size else None)
        root = Path(conf["dataset"])
        self.writer: EpisodeWriter = DatasetWriter(root, read_meta(root)).episode(conf["episode"])
        self.frame_every = int(conf.get("frame_every", 5))
        self.sample_every = int(conf.get("sample_every", 10))
        self.with_qa = bool(conf.get("qa", True))
        self.dt = float(get_world().dt)  # the runner publishes the world before building the agent
        self.planner: RoutePlanner | None = None
        self.ticks: list[int] = []
        self.poses: list[tuple[float, float, float, float]] = []
        self.lane_offsets: list[int] = []
        self.targets: list[np.ndarray] = []
        self.paths: dict[int, np.ndarray] = {}
        self.objects: dict[int, list[SceneObject]] = {}
        self._lane_key: tuple | None = None
        self._lane_offset = 0
        self._s = 0.0
        self.num_samples = 0

    def sensors(self) -> list[dict]:
        """The rig's cameras (as the agent sees them) and the speedometer; no LiDAR or GNSS is needed."""
        keep = [s for s in self.rig.sensors if s.type in (CAMERA, SPEEDOMETER)]
        return [s.to_dict() for s in keep]

    def run_step(self, input_data: dict, timestamp: float) -> Any:
        world = get_world()
        tick = world.frame
        ego = world.ego_state()
        if self.planner is None:
            self.planner = RoutePlanner()
            plan = self._global_plan_world_coord or []
            self.planner.set_route([(np.array(transform_xy(tf)), road_option_value(opt)) for tf, opt in plan])
        xy = np.array([ego.x, ego.y])
        self.planner.update(xy)
        self.targets.append(self.planner.target_points(xy, ego.yaw).stacked())
        self.ticks.append(tick)
        self.poses.append((ego.x, ego.y, ego.yaw, ego.speed))
        self.lane_offsets.append(self._lane_change_count(world))
        if tick % self.frame_every == 0:
            cams = {s.id: np.ascontiguousarray(input_data[s.id][1][..., 2::-1]) for s in self.rig.cameras()}
            self.writer.add_frame(tick, cams)
        if tick % self.sample_every == 0:
            self.paths[tick] = self._route_path(world, xy, ego.yaw)
            if self.with_qa:
                self.objects[tick] = [
                    SceneObject(*world_to_ego([[a.x, a.y]], xy, ego.yaw)[0], a.speed, a.is_vehicle)
                    for a in world.actors(max_range=80.0)
                ]
        return super().run_step(input_data, timestamp)

    def _lane_change_count(self, world) -> int:
        """Cumulative lane changes (+1 per change to the right): lane id changes while the road stays the same."""
        index = getattr(world.ego, "lane_index", None)
        if index is not None:
            road, lane = tuple(index[:2]), int(index[2])
            if self._lane_key is not None and self._lane_key[0] == road and lane != self._lane_key[1]:
                # highway-env numbers lanes from the left (+y is to the right of travel on its straight roads).
                self._lane_offset += int(math.copysign(1, lane - self._lane_key[1]))
            self._lane_key = (road, lane)
        return self._lane_offset

    def _route_path(self, world, xy: np.ndarray, yaw: float) -> np.ndarray:
        path = world.path
        s, _, _ = path.project(xy, self._s - 5.0, self._s + 30.0)
        self._s = s
        pts = []
        for k in range(1, NUM_ROUTE_POINTS + 1):
            target = s + k * PATH_SPACING
            p = path.position_at(target)
            if target > path.length:  # continue straight past the route end
                h = path.heading_at(path.length)
                p = p + (target - path.length) * np.array([math.cos(h), math.sin(h)])
            pts.append(p)
        return world_to_ego(np.stack(pts), xy, yaw)

    def destroy(self) -> None:
        try:
            self._write_samples()
        finally:
            self.writer.close()
            super().destroy()

    def _write_samples(self) -> None:
        if not self.ticks:
            return
        poses = np.asarray(self.poses, dtype=np.float64)
        ticks = np.asarray(self.ticks)
        track = PoseTrack(
            frames=ticks,
            times=ticks * self.dt,
            xy=poses[:, :2],
            yaw=np.unwrap(poses[:, 2]),
            speed=poses[:, 3],
            target_points_world=np.asarray(self.targets),
            lane_ids=np.asarray(self.lane_offsets),
        )
        for i, tick in enumerate(ticks):
            if tick not in self.paths:
                continue
            rec = sample_at(track, i)
            if rec is None:
                continue
            # History must name written frames: snap onto the frame grid (exact for the default 5-tick grid).
            rec.history = [max(0, h - h % self.frame_every) for h in rec.history]
            rec.path = self.paths[tick]
            if self.with_qa:
                rec.qa = scene_qa(self.objects[tick], rec.speed, rec.decisions)
            self.writer.add_sample(rec)
            self.num_samples += 1
