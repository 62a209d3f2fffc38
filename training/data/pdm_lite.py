"""Reader for PDM-Lite expert data as used by SimLingo / AutoMoT (carla_garage data-agent layout).

Assumed layout and fields (from the carla_garage / SimLingo data tooling; all (unverified) against real
files here)::

    ROUTE/rgb/0000.jpg                  front camera (4-digit frame numbers)
    ROUTE/measurements/0000.json.gz     per-frame ego measurements, gzip'd JSON

Measurement fields used: ``ego_matrix`` (4x4 ego-to-world, preferred for poses) or else ``pos_global``
([x, y] world) with ``theta`` (CARLA yaw in radians); ``speed`` (m/s); ``target_point`` and
``target_point_next`` (already in the ego frame, x forward / y right). Frames are assumed to be saved at
4 Hz (every 5th tick of 20 Hz); SimLingo's "2hz" lists subsample those frames.

``route`` (optional): the expert's planned path in the ego frame, points 1 m apart starting 2.5 m ahead. The
released model supervises its 20-point path head with it, so with ``use_route`` (``data.pdm_route_path``, default
on) its first 20 points are the sample's ``path``; frames without a usable ``route`` (missing, fewer than 20
points, non-finite) fall back to the path built from the driven future (training/data/trajectory.py).

AutoMoT's sample lists (``pdm_lite_2hz_2tp_{train,val}_bev_encoder.jsonl``) name, per row, the frames shown to
the model: ``image`` holds the history frames (oldest first), ``front`` the current front frame (a list, its
first entry), optionally ``future`` frames and ``bev_encoder_feature_frame`` (the frame the BEV features are
taken at); paths look like ``.../ROUTE/rgb/NNNN.jpg``. The sample's (current) frame is
``bev_encoder_feature_frame``, else ``front[0]``, else ``image[-1]`` -- never a ``future`` frame, whatever the key
order. The row's own history (the ``image`` frames other than the current one, oldest first) is kept as the
sample's ``history`` instead of re-picking 0.25 / 0.5 / 0.75 s; targets are recomputed from the route's
measurements. A row's own ``route`` (ego frame, as in the measurements) takes precedence over the measurement's.
The prompt shows the row's ``image`` frames exactly (``SampleRecord.prompt_frames``): the released training keeps
the four history frames as the reasoning context and uses the current frame only for the BEV encoder
(OscarHuangWind/AutoMoT @ 278fa5a, docs/TRAINING.md). ``bev_encoder_feature_frame`` may be a bare frame id
(``"0003"``, as the released index writes it) and ``bev_encoder_feature`` the route's feature file relative to the
data root; each episode's ``bev_ref`` says where a frame's BEV input lives (training/data/bev_features.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from automot.training.data.bench2drive import _field, _load_json_gz, find_routes, read_routes
from automot.training.data.bev_features import BEVRef, route_ref
from automot.training.data.schema import NUM_ROUTE_POINTS, DatasetError, Episode
from automot.training.data.trajectory import PoseTrack, samples_from_track

PDM_FRAME_RATE_HZ = 4.0  # (unverified)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def route_path(value) -> np.ndarray | None:
    """The first NUM_ROUTE_POINTS points of a ``route`` value as a [20, 2] array, or None when unusable."""
    if value is None:
        return None
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if arr.ndim != 2 or arr.shape[1] < 2 or arr.shape[0] < NUM_ROUTE_POINTS:
        return None
    arr = arr[:NUM_ROUTE_POINTS, :2]
    return arr if np.isfinite(arr).all() else None


def _pose(m: dict, path: Path) -> tuple[list[float], float]:
    if "ego_matrix" in m:
        mat = np.asarray(m["ego_matrix"], dtype=np.float64)
        if mat.shape != (4, 4):
            raise DatasetError(f"{path}: ego_matrix must be 4x4, got {mat.shape}")
        return [float(mat[0, 3]), float(mat[1, 3])], float(np.arctan2(mat[1, 0], mat[0, 0]))
    if "pos_global" not in m:
        raise DatasetError(f"{path}: neither 'ego_matrix' nor 'pos_global' present (PDM-Lite measurements expected)")
    pos = m["pos_global"]
    return [float(pos[0]), float(pos[1])], _field(m, "theta", path)


def _point(m: dict, key: str, path: Path) -> list[float]:
    value = m.get(key)
    if value is None or len(value) < 2:
        raise DatasetError(f"{path}: field {key!r} missing or not an [x, y] pair")
    return [float(value[0]), float(value[1])]


def read_pdm_route(
    route_dir: str | Path,
    frame_rate_hz: float | None = None,
    every: int = 1,
    frames: set[int] | dict[int, dict] | None = None,
    use_route: bool = True,
) -> Episode:
    """One PDM-Lite route folder as an Episode; ``frames`` restricts which frames become samples. As a dict it maps
    a frame to the sample-list row's overrides: ``history`` (frame numbers, oldest first) and ``route``."""
    route = Path(route_dir)
    rate = frame_rate_hz or PDM_FRAME_RATE_HZ
    files = sorted((route / "measurements").glob("*.json.gz"))
    if not files:
        raise DatasetError(f"{route / 'measurements'}: no *.json.gz files (not a PDM-Lite route folder)")
    ids, xy, yaw, speed, tps, routes = [], [], [], [], [], {}
    for path in files:
        m = _load_json_gz(path)
        ids.append(int(path.name.split(".")[0]))
        pos, heading = _pose(m, path)
        xy.append(pos)
        yaw.append(heading)
        speed.append(_field(m, "speed", path))
        tps.append([_point(m, "target_point", path), _point(m, "target_point_next", path)])
        routes[ids[-1]] = route_path(m.get("route"))
    ids_arr = np.asarray(ids)
    track = PoseTrack(
        frames=ids_arr,
        times=ids_arr / rate,
        xy=np.asarray(xy),
        yaw=np.asarray(yaw),
        speed=np.asarray(speed),
        target_points_ego=np.asarray(tps),
    )
    records = samples_from_track(track, every=every)
    if frames is not None:
        records = [r for r in records if r.frame in frames]
    overrides = frames if isinstance(frames, dict) else {}
    feature_files: dict[int, Path] = {}
    for rec in records:
        row = overrides.get(rec.frame) or {}
        if row.get("history"):
            rec.history = list(row["history"])
        if row.get("images"):
            rec.prompt_frames = list(row["images"])
        if row.get("feature_file") is not None:
            feature_files[rec.frame] = row["feature_file"]
        planned = row.get("route") if row.get("route") is not None else routes.get(rec.frame)
        if use_route and planned is not None:
            rec.path = planned.copy()

    def image_path(frame: int) -> Path:
        return route / "rgb" / f"{frame:04d}.jpg"

    def bev_ref(frame: int) -> BEVRef:
        return route_ref(route, frame, feature_files.get(frame))

    return Episode(route.name, records, image_path, bev_ref)


def read_pdm_lite(
    root: str | Path,
    frame_rate_hz: float | None = None,
    every: int = 1,
    use_route: bool = True,
    problems: list[str] | None = None,
) -> list[Episode]:
    """Every route folder (one with ``measurements/``) under ``root`` (up to 4 levels down), sorted by path; an
    unreadable route is skipped and reported in ``problems`` (and the log)."""
    root = Path(root)
    routes = find_routes(root, "measurements", max_depth=4)
    if not routes:
        raise DatasetError(f"{root}: no PDM-Lite route folders (folders with measurements/*.json.gz)")
    return read_routes(routes, lambda r: read_pdm_route(r, frame_rate_hz, every, use_route=use_route), problems)


def _image_paths(value) -> list[str]:
    """Image paths (``.../rgb/NNNN.jpg``) in a row value, in order."""
    if isinstance(value, str):
        v = value.replace("\\", "/")
        return [v] if "/rgb/" in v and v.lower().endswith(IMAGE_SUFFIXES) else []
    if isinstance(value, dict):
        return [p for v in value.values() for p in _image_paths(v)]
    if isinstance(value, list):
        return [p for v in value for p in _image_paths(v)]
    return []


def row_frames(row: dict, where: str) -> tuple[str, list[str]]:
    """(current frame path, history frame paths oldest first) of a sample-list row.

    Current = ``bev_encoder_feature_frame``, else ``front[0]``, else ``image[-1]``; history = the ``image``
    frames other than the current one. ``future`` frames are never chosen."""
    current = None
    for key in ("bev_encoder_feature_frame", "front"):
        found = _image_paths(row.get(key))
        if found:
            current = found[0]
            break
    images = _image_paths(row.get("image"))
    if current is None and images:
        current = images[-1]
    if current is None:
        raise DatasetError(
            f"{where}: no current frame: none of 'bev_encoder_feature_frame', 'front', 'image' holds a "
            "'.../rgb/NNNN.jpg' path"
        )
    return current, [p for p in images if p != current]


def read_sample_list(
    jsonl: str | Path, data_root: str | Path, frame_rate_hz: float | None = None, use_route: bool = True
) -> list[Episode]:
    """Episodes restricted to the frames an AutoMoT sample list names (route paths resolved under data_root),
    with the rows' own history frames (and ``route`` when a row carries one)."""
    jsonl, data_root = Path(jsonl), Path(data_root)
    wanted: dict[Path, dict[int, dict]] = {}
    with open(jsonl) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{jsonl}:{line_no}: invalid JSON ({exc})") from None
            if not isinstance(row, dict):
                raise DatasetError(f"{jsonl}:{line_no}: a row must be a JSON object")
            current_str, history_strs = row_frames(row, f"{jsonl}:{line_no}")
            current = Path(current_str)
            route = current.parent.parent
            route = route if route.is_absolute() else data_root / route
            if not (route / "measurements").is_dir():
                raise DatasetError(f"{jsonl}:{line_no}: route folder {route} has no measurements/")
            history = []
            for h in history_strs:
                if Path(h).parent.parent.name != current.parent.parent.name:
                    raise DatasetError(f"{jsonl}:{line_no}: history frame {h} is from another route than {current}")
                try:
                    history.append(int(Path(h).stem))
                except ValueError:
                    raise DatasetError(f"{jsonl}:{line_no}: image frame {h!r} is not numbered") from None
            try:
                frame = int(current.stem)
            except ValueError:
                raise DatasetError(f"{jsonl}:{line_no}: current frame {current_str!r} is not numbered") from None
            bev_frame = row.get("bev_encoder_feature_frame")
            if isinstance(bev_frame, (int, str)) and str(bev_frame).strip().isdigit():
                frame = int(bev_frame)  # the released index names the BEV frame by id ("0003"), not by path
            prompt = [int(Path(p).stem) for p in _image_paths(row.get("image")) if Path(p).stem.isdigit()]
            feature = row.get("bev_encoder_feature")
            feature_file = None
            if isinstance(feature, str) and feature.strip():
                feature_file = Path(feature) if Path(feature).is_absolute() else data_root / feature
            wanted.setdefault(route, {})[frame] = {
                "history": history,
                "route": route_path(row.get("route")),
                "images": prompt,
                "feature_file": feature_file,
            }
    episodes = [read_pdm_route(r, frame_rate_hz, frames=fr, use_route=use_route) for r, fr in sorted(wanted.items())]
    return [e for e in episodes if e.records]
