"""Reader for the Bench2Drive training set's on-disk layout (one folder per route clip).

Assumed layout and fields — written from the Bench2Drive dataset description and its UniAD/VAD converters,
all (unverified) against the real files here::

    ROUTE/camera/rgb_front/00000.jpg   (also rgb_front_left, rgb_back, ... ; 5-digit frame numbers)
    ROUTE/anno/00000.json.gz           per-frame annotation, gzip'd JSON

Annotation fields used: ``x``, ``y`` (CARLA world, metres), ``theta`` (IMU compass in radians, 0 = north =
world -y, so the CARLA yaw is theta - pi/2), ``speed`` (m/s). ``anno.md`` documents ``None`` speed and yaw, and the
first frames of a route can have a NaN heading: gaps (None / NaN) in ``theta`` and ``speed`` are filled with the
previous valid value, leading gaps with the first valid one (never 0 = north, which would turn an east-bound car's
target points to its right); a route with no valid value at all is a DatasetError. Also ``x_command_near`` / ``y_command_near`` and ``x_command_far`` / ``y_command_far`` (world
target points of the TCP-style near / far route planners; used as target point and next target point — the
released AutoMoT planner uses route[1] / route[2] of RoutePlanner(7.5, 50) instead, an approximation).
Frames are assumed to be recorded at 10 Hz. ``bounding_boxes`` is not needed for the targets.

``read_b2d`` accepts a clip folder, a folder of clips, or the dataset root (``DATAROOT/v1/<clip>/...``: clips are
looked for up to ``MAX_ROUTE_DEPTH`` levels down). A clip that cannot be read is skipped and reported (logged and
appended to ``problems``), never stopping the whole load; only a dataset without one readable clip raises.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
from pathlib import Path

import numpy as np

from automot.training.data.schema import DatasetError, Episode
from automot.training.data.trajectory import PoseTrack, samples_from_track

B2D_FRAME_RATE_HZ = 10.0  # (unverified)
B2D_DEFAULT_CAMERA = "rgb_front"
MAX_ROUTE_DEPTH = 3  # DATAROOT/v1/<clip>/anno: the clip is 2 levels below the root given

log = logging.getLogger(__name__)


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


def _optional_number(anno: dict, key: str, path: Path) -> float:
    """``anno[key]`` as a float, NaN when missing or None (a gap to fill); a non-number is a DatasetError."""
    value = anno.get(key)
    if value is None:
        return float("nan")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise DatasetError(f"{path}: field {key!r} is not a number ({value!r})") from None


def fill_gaps(values: list[float], what: str) -> np.ndarray:
    """NaN entries replaced by the previous valid value; leading NaNs by the first valid one.

    ``what`` names the field in the DatasetError raised when no value is valid."""
    arr = np.asarray(values, dtype=np.float64)
    valid = np.isfinite(arr)
    if not valid.any():
        raise DatasetError(f"{what}: no valid value in any frame (all None / NaN)")
    idx = np.where(valid, np.arange(len(arr)), -1)
    idx = np.maximum.accumulate(idx)
    idx[idx < 0] = int(np.argmax(valid))
    return arr[idx]


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
    frames, xy, theta, speed, tps = [], [], [], [], []
    for path in anno_files:
        anno = _load_json_gz(path)
        frames.append(int(path.name.split(".")[0]))
        xy.append([_field(anno, "x", path), _field(anno, "y", path)])
        if "speed" not in anno:
            raise DatasetError(f"{path}: field 'speed' missing (Bench2Drive annotation expected)")
        theta.append(_optional_number(anno, "theta", path))
        speed.append(_optional_number(anno, "speed", path))
        near = [_field(anno, "x_command_near", path), _field(anno, "y_command_near", path)]
        far = [_field(anno, "x_command_far", path), _field(anno, "y_command_far", path)]
        tps.append([near, far])
    frames_arr = np.asarray(frames)
    track = PoseTrack(
        frames=frames_arr,
        times=frames_arr / rate,
        xy=np.asarray(xy),
        yaw=fill_gaps(theta, f"{route / 'anno'}: field 'theta'") - math.pi / 2.0,
        speed=fill_gaps(speed, f"{route / 'anno'}: field 'speed'"),
        target_points_world=np.asarray(tps),
    )
    images = route / "camera" / cam

    def image_path(frame: int) -> Path:
        return images / f"{frame:05d}.jpg"

    return Episode(route.name, samples_from_track(track, every=every), image_path)


def find_routes(root: Path, marker: str, max_depth: int = MAX_ROUTE_DEPTH) -> list[Path]:
    """Folders holding a ``marker`` sub-folder: ``root`` itself, else those up to ``max_depth`` levels below it
    (not descending into a route once found), sorted by path."""
    if (root / marker).is_dir():
        return [root]
    found: list[Path] = []
    level = [root] if root.is_dir() else []
    for _ in range(max_depth):
        nxt = []
        for folder in level:
            for child in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
                (found if (child / marker).is_dir() else nxt).append(child)
        level = nxt
    return sorted(found)


def read_routes(routes: list[Path], read, problems: list[str] | None = None) -> list:
    """``read(route)`` for every route; a route raising DatasetError is skipped, logged and appended to
    ``problems``. Raises only when no route could be read."""
    episodes, errors = [], []
    for route in routes:
        try:
            episodes.append(read(route))
        except DatasetError as exc:
            message = f"skipped route {route}: {exc}"
            log.warning(message)
            errors.append(message)
    if problems is not None:
        problems.extend(errors)
    if routes and not episodes:
        raise DatasetError(f"no readable route among {len(routes)}: {errors[0]}" + ("; ..." if len(errors) > 1 else ""))
    return episodes


def read_b2d(
    root: str | Path,
    camera: str | None = None,
    frame_rate_hz: float | None = None,
    every: int = 1,
    problems: list[str] | None = None,
) -> list[Episode]:
    """Every route clip under ``root`` (the clip itself, a folder of clips, or the dataset root ``DATAROOT`` with
    ``v1/<clip>/``); unreadable clips are skipped and reported in ``problems`` (and the log)."""
    root = Path(root)
    routes = find_routes(root, "anno")
    if not routes:
        raise DatasetError(f"{root}: no Bench2Drive route folders (folders with anno/*.json.gz)")
    if routes == [root]:
        return [read_b2d_route(root, camera, frame_rate_hz, every)]
    return read_routes(routes, lambda r: read_b2d_route(r, camera, frame_rate_hz, every), problems)
