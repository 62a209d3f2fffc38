"""Reader for the Bench2Drive training set's on-disk layout (one folder per route clip).

Assumed layout and fields — written from the Bench2Drive dataset description and its UniAD/VAD converters,
all (unverified) against the real files here::

    ROUTE/camera/rgb_front/00000.jpg   (also rgb_front_left, rgb_back, ... ; 5-digit frame numbers)
    ROUTE/anno/00000.json.gz           per-frame annotation, gzip'd JSON

Annotation fields used: ``x``, ``y`` (CARLA world, metres), ``theta`` (IMU compass in radians, 0 = north =
world -y, so the CARLA yaw is theta - pi/2; NaN on the first frames, replaced by the previous frame's value),
``speed`` (m/s), ``x_command_near`` / ``y_command_near`` and ``x_command_far`` / ``y_command_far`` (world
target points of the TCP-style near / far route planners; used as target point and next target point — the
released AutoMoT planner uses route[1] / route[2] of RoutePlanner(7.5, 50) instead, an approximation).
Frames are assumed to be recorded at 10 Hz. ``bounding_boxes`` is not needed for the targets.
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np

from automot.training.data.schema import DatasetError, Episode
from automot.training.data.trajectory import PoseTrack, samples_from_track

B2D_FRAME_RATE_HZ = 10.0  # (unverified)
B2D_DEFAULT_CAMERA = "rgb_front"


def _load_json_gz(path: Path) -> dict:
    try:
        with gzip.open(path, "rt") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: unreadable gzip JSON ({exc})") from None


def _field(anno: dict, key: str, path: Path) -> float:
    if key not in anno:
        raise DatasetError(f"{path}: field {key!r} missing (Bench2Drive annotation expected)")
    try:
        return float(anno[key])
    except (TypeError, ValueError):
        raise DatasetError(f"{path}: field {key!r} is not a number ({anno[key]!r})") from None


def read_b2d_route(
    route_dir: str | Path, camera: str | None = None, frame_rate_hz: float | None = None, every: int = 1
) -> Episode:
    """One Bench2Drive route clip as an Episode (samples for frames with a full 3 s future)."""
    route = Path(route_dir)
    cam = camera or B2D_DEFAULT_CAMERA
    rate = frame_rate_hz or B2D_FRAME_RATE_HZ
    anno_files = sorted((route / "anno").glob("*.json.gz"))
    if not anno_files:
        raise DatasetError(f"{route / 'anno'}: no *.json.gz annotations (not a Bench2Drive route folder)")
    frames, xy, yaw, speed, tps = [], [], [], [], []
    last_theta = 0.0
    for path in anno_files:
        anno = _load_json_gz(path)
        frames.append(int(path.name.split(".")[0]))
        xy.append([_field(anno, "x", path), _field(anno, "y", path)])
        theta = float(anno.get("theta", float("nan")))
        last_theta = last_theta if math.isnan(theta) else theta
        yaw.append(last_theta - math.pi / 2.0)
        speed.append(_field(anno, "speed", path))
        near = [_field(anno, "x_command_near", path), _field(anno, "y_command_near", path)]
        far = [_field(anno, "x_command_far", path), _field(anno, "y_command_far", path)]
        tps.append([near, far])
    frames_arr = np.asarray(frames)
    track = PoseTrack(
        frames=frames_arr,
        times=frames_arr / rate,
        xy=np.asarray(xy),
        yaw=np.asarray(yaw),
        speed=np.asarray(speed),
        target_points_world=np.asarray(tps),
    )
    images = route / "camera" / cam

    def image_path(frame: int) -> Path:
        return images / f"{frame:05d}.jpg"

    return Episode(route.name, samples_from_track(track, every=every), image_path)


def read_b2d(
    root: str | Path, camera: str | None = None, frame_rate_hz: float | None = None, every: int = 1
) -> list[Episode]:
    """Every route folder under ``root`` (a folder with ``anno/``), or ``root`` itself if it is one."""
    root = Path(root)
    if (root / "anno").is_dir():
        return [read_b2d_route(root, camera, frame_rate_hz, every)]
    routes = sorted(p for p in root.iterdir() if (p / "anno").is_dir()) if root.is_dir() else []
    if not routes:
        raise DatasetError(f"{root}: no Bench2Drive route folders (folders with anno/*.json.gz)")
    return [read_b2d_route(r, camera, frame_rate_hz, every) for r in routes]
