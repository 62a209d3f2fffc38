"""``automot data doctor`` checks of the released model's BEV-encoder inputs in a PDM-Lite route.

Run on every route that has a ``bev_encoder_feature/`` or ``bev_encoder_lidar_bev/`` folder (a PDM-Lite dataset
without them is for models without BEV tokens). Per route (training/data/bev_features.py has the layout):

- ``route_features.pt``: readable, ``frame_nums`` + ``bev_features`` ``[N, C, H, W]`` (+ ``bev_upsamples``
  ``[N, ...]``) with matching N, the same ``[C, H, W]`` in every route; every id in ``frame_nums`` is a frame of
  the route (an annotation exists);
- ``bev_encoder_lidar_bev/<frame>.npy``: a float ``[C, H, W]`` (or ``[H, W, C]``) array with C in {1, 2}, the same
  shape in the whole dataset (fast checks: the first and last array of a route);
- every annotated frame is counted by the BEV path that would serve it: ``precomputed`` (its id in the feature
  file), ``online`` (``rgb/<frame>.jpg`` + its LiDAR array) or ``skipped`` (neither: the trainer drops it, a
  warning names the route).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from automot.training.data.bev_features import FEATURE_DIR, FEATURE_FILE, LIDAR_DIR, load_route_features
from automot.training.data.schema import DatasetError


def has_bev_inputs(route: Path) -> bool:
    return (route / FEATURE_DIR).is_dir() or (route / LIDAR_DIR).is_dir()


def _check_lidar(report, path: Path, seen: dict) -> bool:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        report.error(path, None, f"unreadable .npy ({exc})")
        return False
    shape = tuple(arr.shape)
    if len(shape) == 3 and shape[0] not in (1, 2) and shape[-1] in (1, 2):
        shape = (shape[2], shape[0], shape[1])  # [H, W, C] is accepted and transposed by the reader
    if len(shape) != 3 or shape[0] not in (1, 2):
        report.error(path, None, f"LiDAR BEV must be [C, H, W] with C in {{1, 2}}, got shape {tuple(arr.shape)}")
        return False
    if not np.issubdtype(arr.dtype, np.floating):
        report.error(path, None, f"LiDAR BEV must be a float array (normalised histogram), got {arr.dtype}")
        return False
    first = seen.setdefault("lidar_shape", shape)
    if shape != first:
        report.error(path, None, f"LiDAR BEV shape {list(shape)} differs from the dataset's {list(first)}")
        return False
    return True


def check_route_bev(report, route: Path, frames: list[int], digits: int, fast: bool) -> None:
    """Check one route's BEV inputs and count its frames per BEV path into ``report.bev``."""
    counts = report.bev.setdefault("frames", {"precomputed": 0, "online": 0, "skipped": 0})
    seen = report.bev.setdefault("_seen", {})
    report.bev["routes_with_features"] = report.bev.get("routes_with_features", 0)
    feature_file = route / FEATURE_DIR / FEATURE_FILE
    have: set[int] = set()
    if feature_file.is_file():
        try:
            feats = load_route_features(feature_file)
        except DatasetError as exc:
            report.error(feature_file, None, str(exc).removeprefix(f"{feature_file}: "))
        else:
            report.bev["routes_with_features"] += 1
            shape = tuple(feats.bev_features.shape[1:])
            first = seen.setdefault("feature_shape", shape)
            report.bev["feature_shape"] = list(first)
            if shape != first:
                report.error(feature_file, "bev_features", f"[N, {list(shape)}] differs from the dataset's {first}")
            known = set(frames)
            unknown = [f for f in feats.frame_nums if not f.isdigit() or int(f) not in known]
            if unknown:
                report.error(feature_file, "frame_nums", f"ids without an annotated frame: {unknown[:5]}")
            have = {int(f) for f in feats.frame_nums if f.isdigit()}
    lidar_dir, rgb_dir = route / LIDAR_DIR, route / "rgb"
    lidar_names = {p.name for p in lidar_dir.iterdir()} if lidar_dir.is_dir() else set()
    rgb_names = {p.name for p in rgb_dir.iterdir()} if rgb_dir.is_dir() else set()
    bad: set[str] = set()
    checked = sorted(lidar_names)
    for name in checked[:1] + checked[-1:] if fast else checked:
        if name.endswith(".npy") and not _check_lidar(report, lidar_dir / name, seen):
            bad.add(name)
    skipped = 0
    for f in frames:
        name = f"{f:0{digits}d}"
        if f in have:
            counts["precomputed"] += 1
        elif f"{name}.npy" in lidar_names and f"{name}.npy" not in bad and f"{name}.jpg" in rgb_names:
            counts["online"] += 1
        else:
            counts["skipped"] += 1
            skipped += 1
    if skipped:
        report.warning(
            route,
            None,
            f"{skipped} frame(s) have neither precomputed BEV features nor online inputs "
            f"({FEATURE_DIR}/{FEATURE_FILE} frame, rgb + {LIDAR_DIR}): the trainer skips them",
        )


def finish_bev(report) -> None:
    report.bev.pop("_seen", None)
