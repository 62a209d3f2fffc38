"""Bench2Drive's per-route agent outputs under ``$SAVE_PATH/<save_name>/`` (docs/leaderboard-agent-interface.md §9).

* ``metric_info.json``: ``{step: metric dict}``, rewritten as the route goes (read by
  ``tools/efficiency_smoothness_benchmark.py``);
* ``rgb_front/%04d.png`` and ``meta/%04d.json`` (``steer``, ``throttle``, ``brake``, ``speed`` plus our extras;
  read by ``tools/generate_video.py``).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import cv2
import numpy as np

from automot.agent.config import Bench2DriveConfig
from automot.fsio import atomic_write_bytes, atomic_write_text

METRIC_INFO_NAME = "metric_info.json"


def resolve_save_name(conf_string: str | None) -> tuple[str, str]:
    """Split Bench2Drive's ``CONFIG+save_name`` agent-config string into (config path, save name).

    The Bench2Drive fork appends ``'+' + save_name`` to ``--agent-config`` on every route of a run without
    resetting it, so route k of one evaluator process receives ``CONFIG+save_1+...+save_k``: the config is the
    text before the first ``+`` and the save name (this route's) the text after the last one. Without a ``+``
    suffix the save name is a timestamp, matching B2D's ``..._mm_dd_HH_MM_SS`` tail.
    """
    text = conf_string or ""
    conf, plus, _ = text.partition("+")
    if plus:
        save_name = text.rpartition("+")[2].strip()
        if save_name:
            return conf, save_name
    return conf, "automot_" + time.strftime("%m_%d_%H_%M_%S")


def _finite_list(values: np.ndarray | list) -> list[float]:
    return [float(v) if math.isfinite(float(v)) else 0.0 for v in np.asarray(values, dtype=np.float64).ravel()]


def estimate_metric_info(position: np.ndarray, altitude: float, yaw: float, imu: np.ndarray) -> dict:
    """The metric dict of B2D's ``get_metric_info`` estimated from our own state (no CARLA actor).

    Keys and units follow the CARLA actor getters it replaces: world-frame acceleration (m/s^2) and angular
    velocity (deg/s), unit forward/right vectors, location [x, y, z] and rotation [roll, pitch, yaw] in degrees.
    The IMU measures in the ego frame, so acceleration is rotated by yaw into the world frame.
    """
    c, s = math.cos(yaw), math.sin(yaw)
    acc = np.asarray(imu[:3], dtype=np.float64)
    acc_world = [c * acc[0] - s * acc[1], s * acc[0] + c * acc[1], acc[2]]
    gyro_deg = np.degrees(np.asarray(imu[3:6], dtype=np.float64))
    return {
        "acceleration": _finite_list(acc_world),
        "angular_velocity": _finite_list(gyro_deg),
        "forward_vector": _finite_list([c, s, 0.0]),
        "right_vector": _finite_list([-s, c, 0.0]),
        "location": _finite_list([position[0], position[1], altitude]),
        "rotation": _finite_list([0.0, 0.0, math.degrees(yaw)]),
    }


class Bench2DriveWriter:
    """Writes the B2D per-route files; created only when ``SAVE_PATH`` is set."""

    def __init__(self, route_dir: str | Path, config: Bench2DriveConfig | None = None) -> None:
        self.config = config or Bench2DriveConfig()
        self.route_dir = Path(route_dir)
        self.metric_info: dict[int, dict] = {}
        (self.route_dir / "meta").mkdir(parents=True, exist_ok=True)
        if self.config.rgb_front:
            (self.route_dir / "rgb_front").mkdir(parents=True, exist_ok=True)

    @staticmethod
    def from_env(save_name: str, config: Bench2DriveConfig) -> Bench2DriveWriter | None:
        """A writer for ``$SAVE_PATH/<save_name>`` or None when SAVE_PATH is unset or outputs are disabled."""
        save_path = os.environ.get("SAVE_PATH")
        if not save_path or not config.enabled:
            return None
        return Bench2DriveWriter(Path(save_path) / save_name, config)

    def write_step(self, step: int, rgb_front: np.ndarray | None, meta: dict, metric: dict | None) -> None:
        """Write this step's image, meta and (every N steps) metric_info.json."""
        if rgb_front is not None and self.config.rgb_front:
            # PNG compression 1: a few ms per 1024x512 frame instead of tens at the default level.
            _, png = cv2.imencode(".png", cv2.cvtColor(rgb_front, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
            atomic_write_bytes(self.route_dir / "rgb_front" / f"{step:04d}.png", png.tobytes())
        atomic_write_text(
            self.route_dir / "meta" / f"{step:04d}.json", json.dumps(meta, indent=2, default=_json_default)
        )
        if metric is not None:
            self.metric_info[int(step)] = metric
            if step % self.config.metric_info_every == 0:
                self.flush_metric_info()

    def flush_metric_info(self) -> None:
        """Rewrite metric_info.json atomically (a crash mid-write must not corrupt earlier steps)."""
        atomic_write_text(self.route_dir / METRIC_INFO_NAME, json.dumps(self.metric_info, indent=1))

    def close(self) -> None:
        if self.metric_info:
            self.flush_metric_info()


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
