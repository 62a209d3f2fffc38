"""Bench2Drive's per-route ``metric_info.json`` for embedded-world routes, from the recorder's ``world.jsonl``.

In CARLA the Bench2Drive agent writes ``metric_info.json`` (the ego's state every 0.1 s) and the smoothness metric
reads it (automot.evaluation.metrics). The embedded world has no such agent, but its debug recorder logs the true
ego state every tick (``world.jsonl``: x, y, yaw in rad, speed in m/s; agent/world_record.py), so the same file is
derived from it: one frame per 0.1 s of simulated time with ``location``, ``rotation`` (pitch, yaw, roll in
degrees, as CARLA's Rotation), ``forward_vector`` / ``right_vector`` (CARLA's frame: y to the right of x),
``acceleration`` (the time derivative of the velocity speed x forward vector, m/s^2) and ``angular_velocity``
(z: the yaw rate in deg/s, CARLA's unit, which the metric uses as stored).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from automot.fsio import atomic_write_json

DT = 0.1  # Bench2Drive's metric_info step
METRIC_INFO = "metric_info.json"
WORLD_LOG = "world.jsonl"

__all__ = ["from_world_log", "write_missing"]


def _ticks(path: Path) -> list[tuple[float, float, float, float, float]]:
    """(sim_time, x, y, yaw, speed) per tick line of a world.jsonl (bad or cut lines skipped)."""
    out = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                d = json.loads(line)
                if d.get("kind") != "tick":
                    continue
                e = d["ego"]
                out.append((float(d["sim_time"]), float(e["x"]), float(e["y"]), float(e["yaw"]), float(e["speed"])))
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
    return out


def from_world_log(path: str | os.PathLike, dt: float = DT) -> dict[str, Any] | None:
    """``{"0": frame, "1": frame, ...}`` every ``dt`` seconds of simulated time (None below 3 frames)."""
    ticks = _ticks(Path(path))
    picked, next_t = [], None
    for tick in ticks:  # the first tick at or after each multiple of dt
        if next_t is None or tick[0] >= next_t - 1e-9:
            picked.append(tick)
            next_t = (round(tick[0] / dt) + 1) * dt
    if len(picked) < 3:
        return None
    t = np.array([p[0] for p in picked])
    x, y = np.array([p[1] for p in picked]), np.array([p[2] for p in picked])
    yaw = np.unwrap(np.array([p[3] for p in picked]))
    speed = np.array([p[4] for p in picked])
    fwd = np.stack([np.cos(yaw), np.sin(yaw)], axis=-1)
    vel = speed[:, None] * fwd
    acc = np.stack([np.gradient(vel[:, 0], t), np.gradient(vel[:, 1], t)], axis=-1)
    yaw_rate = np.degrees(np.gradient(yaw, t))
    frames = {}
    for i in range(len(picked)):
        frames[str(i)] = {
            "location": [float(x[i]), float(y[i]), 0.0],
            "rotation": [0.0, float(math.degrees(yaw[i])), 0.0],
            "forward_vector": [float(fwd[i, 0]), float(fwd[i, 1]), 0.0],
            "right_vector": [float(-fwd[i, 1]), float(fwd[i, 0]), 0.0],
            "acceleration": [float(acc[i, 0]), float(acc[i, 1]), 0.0],
            "angular_velocity": [0.0, 0.0, float(yaw_rate[i])],
            "speed": float(speed[i]),
            "sim_time": float(t[i]),
        }
    return frames


def write_missing(out: str | os.PathLike, job_ids: list[str]) -> list[str]:
    """Write ``metric_info.json`` into each recorded route folder of ``job_ids`` that has a ``world.jsonl`` and no
    ``metric_info.json`` yet (embedded routes); returns the job ids written."""
    written = []
    for job in job_ids:
        folder = Path(out) / "routes" / job
        if not (folder / "record.json").is_file() or (folder / METRIC_INFO).is_file():
            continue
        logs = sorted(folder.rglob(WORLD_LOG))
        if not logs:
            continue
        info = from_world_log(logs[0])
        if info is not None:
            atomic_write_json(folder / METRIC_INFO, info, indent=None)
            written.append(job)
    return written
