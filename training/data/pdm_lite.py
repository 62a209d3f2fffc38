"""Reader for PDM-Lite expert data as used by SimLingo / AutoMoT (carla_garage data-agent layout).

Assumed layout and fields (from the carla_garage / SimLingo data tooling; all (unverified) against real
files here)::

    ROUTE/rgb/0000.jpg                  front camera (4-digit frame numbers)
    ROUTE/measurements/0000.json.gz     per-frame ego measurements, gzip'd JSON

Measurement fields used: ``ego_matrix`` (4x4 ego-to-world, preferred for poses) or else ``pos_global``
([x, y] world) with ``theta`` (CARLA yaw in radians); ``speed`` (m/s); ``target_point`` and
``target_point_next`` (already in the ego frame, x forward / y right). Frames are assumed to be saved at
4 Hz (every 5th tick of 20 Hz); SimLingo's "2hz" lists subsample those frames.

AutoMoT's sample lists (``pdm_lite_2hz_2tp_{train,val}_bev_encoder.jsonl``) name, per row, the frames shown to
the model; their exact schema is (unverified), so ``read_sample_list`` only relies on the row containing the
image paths (``.../ROUTE/rgb/NNNN.jpg``, oldest first, anywhere in the row): the last one is the sample's
frame, and targets are recomputed from that route's measurements.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from automot.training.data.bench2drive import _field, _load_json_gz
from automot.training.data.schema import DatasetError, Episode
from automot.training.data.trajectory import PoseTrack, samples_from_track

PDM_FRAME_RATE_HZ = 4.0  # (unverified)


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
    route_dir: str | Path, frame_rate_hz: float | None = None, every: int = 1, frames: set[int] | None = None
) -> Episode:
    """One PDM-Lite route folder as an Episode; ``frames`` restricts which frames become samples."""
    route = Path(route_dir)
    rate = frame_rate_hz or PDM_FRAME_RATE_HZ
    files = sorted((route / "measurements").glob("*.json.gz"))
    if not files:
        raise DatasetError(f"{route / 'measurements'}: no *.json.gz files (not a PDM-Lite route folder)")
    ids, xy, yaw, speed, tps = [], [], [], [], []
    for path in files:
        m = _load_json_gz(path)
        ids.append(int(path.name.split(".")[0]))
        pos, heading = _pose(m, path)
        xy.append(pos)
        yaw.append(heading)
        speed.append(_field(m, "speed", path))
        tps.append([_point(m, "target_point", path), _point(m, "target_point_next", path)])
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

    def image_path(frame: int) -> Path:
        return route / "rgb" / f"{frame:04d}.jpg"

    return Episode(route.name, records, image_path)


def read_pdm_lite(root: str | Path, frame_rate_hz: float | None = None, every: int = 1) -> list[Episode]:
    """Every route folder (one with ``measurements/``) found under ``root`` at any depth, sorted by path."""
    root = Path(root)
    routes = sorted({p.parent for p in root.rglob("measurements") if p.is_dir()})
    if not routes:
        raise DatasetError(f"{root}: no PDM-Lite route folders (folders with measurements/*.json.gz)")
    return [read_pdm_route(r, frame_rate_hz, every) for r in routes]


def _image_paths(value) -> list[str]:
    if isinstance(value, str):
        return [value] if "/rgb/" in value.replace("\\", "/") and value.lower().endswith((".jpg", ".png")) else []
    if isinstance(value, dict):
        return [p for v in value.values() for p in _image_paths(v)]
    if isinstance(value, list):
        return [p for v in value for p in _image_paths(v)]
    return []


def read_sample_list(jsonl: str | Path, data_root: str | Path, frame_rate_hz: float | None = None) -> list[Episode]:
    """Episodes restricted to the frames an AutoMoT sample list names (route paths resolved under data_root)."""
    jsonl, data_root = Path(jsonl), Path(data_root)
    wanted: dict[Path, set[int]] = {}
    with open(jsonl) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{jsonl}:{line_no}: invalid JSON ({exc})") from None
            paths = _image_paths(row)
            if not paths:
                raise DatasetError(f"{jsonl}:{line_no}: no '.../rgb/NNNN.jpg' image path in the row")
            current = Path(paths[-1])
            route = current.parent.parent
            route = route if route.is_absolute() else data_root / route
            if not (route / "measurements").is_dir():
                raise DatasetError(f"{jsonl}:{line_no}: route folder {route} has no measurements/")
            wanted.setdefault(route, set()).add(int(current.stem))
    episodes = [read_pdm_route(r, frame_rate_hz, frames=fr) for r, fr in sorted(wanted.items())]
    return [e for e in episodes if e.records]
