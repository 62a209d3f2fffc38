"""Ego-frame path targets from recorded poses: time interpolation, arc-length resampling, the supervised path.

Frames and the world -> ego transform (x forward, y right) are ``automot.geometry``'s.
"""

from __future__ import annotations

import numpy as np


def interpolate_in_time(times: np.ndarray, points: np.ndarray, query: np.ndarray) -> np.ndarray | None:
    """Linear interpolation of (N, 2) ``points`` stamped ``times`` at ``query`` times; None if any query lies
    outside [times[0], times[-1]] (the recording does not cover the horizon)."""
    times = np.asarray(times, dtype=np.float64)
    query = np.asarray(query, dtype=np.float64)
    if len(times) == 0 or query.min() < times[0] - 1e-6 or query.max() > times[-1] + 1e-6:
        return None
    return np.stack([np.interp(query, times, points[:, k]) for k in range(2)], axis=1)


def resample_polyline(polyline: np.ndarray, spacing: float, count: int) -> np.ndarray:
    """Points at arc length spacing * (1..count) along ``polyline`` (which starts at the origin of the path).

    Beyond the polyline's end the last segment's direction is extended (x forward when the polyline has no
    length at all, i.e. a vehicle standing still with nothing ahead).
    """
    pts = np.asarray(polyline, dtype=np.float64).reshape(-1, 2)
    seg = np.diff(pts, axis=0)
    seg_len = np.linalg.norm(seg, axis=1)
    keep = np.concatenate([[True], seg_len > 1e-6])
    pts = pts[keep]
    seg = np.diff(pts, axis=0)
    seg_len = np.linalg.norm(seg, axis=1)
    targets = spacing * np.arange(1, count + 1)
    if len(pts) < 2:
        return pts[0] + np.stack([targets, np.zeros(count)], axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg_len)])
    out = np.stack([np.interp(targets, arc, pts[:, k]) for k in range(2)], axis=1)
    beyond = targets > arc[-1]
    if beyond.any():
        direction = seg[-1] / seg_len[-1]
        out[beyond] = pts[-1] + (targets[beyond] - arc[-1])[:, None] * direction
    return out


def build_path(future_xy: np.ndarray, target_points: np.ndarray, spacing: float, count: int) -> np.ndarray:
    """The supervised path: the ego's driven future (ego frame) continued through the target points that lie
    beyond its end, resampled every ``spacing`` metres. Appending the target points keeps the path meaningful
    when the ego stands still (the driven future then has no length)."""
    poly = [np.zeros(2)] + [p for p in np.asarray(future_xy, dtype=np.float64).reshape(-1, 2)]
    poly = [poly[0]] + [p for prev, p in zip(poly, poly[1:]) if np.linalg.norm(p - prev) > 1e-6]
    for tp in np.asarray(target_points, dtype=np.float64).reshape(-1, 2):
        end = poly[-1]
        if np.linalg.norm(tp - end) <= spacing:
            continue
        # Only points ahead of the current end (positive along the last direction) extend the path; with no
        # direction yet (standing still) the target point itself gives it.
        if len(poly) == 1 or float(np.dot(tp - end, end - poly[-2])) > 0.0:
            poly.append(tp)
    return resample_polyline(np.stack(poly), spacing, count)
