"""Ego-frame geometry for building targets from recorded poses.

World frames here are CARLA-like: yaw in radians turns +x toward +y. The ego frame has x forward and y to the
right, which is what you get by rotating world offsets by -yaw in that same handedness.
"""

from __future__ import annotations

import numpy as np


def wrap_angle(angle: np.ndarray | float) -> np.ndarray | float:
    """Wrap to [-pi, pi)."""
    return (np.asarray(angle) + np.pi) % (2.0 * np.pi) - np.pi


def world_to_ego(points: np.ndarray, ego_xy: np.ndarray, ego_yaw: float) -> np.ndarray:
    """(N, 2) world points -> ego frame (x forward, y right)."""
    d = np.asarray(points, dtype=np.float64).reshape(-1, 2) - np.asarray(ego_xy, dtype=np.float64).reshape(1, 2)
    c, s = np.cos(ego_yaw), np.sin(ego_yaw)
    return np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]], axis=1)


def ego_to_world(points: np.ndarray, ego_xy: np.ndarray, ego_yaw: float) -> np.ndarray:
    """Inverse of ``world_to_ego``."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    c, s = np.cos(ego_yaw), np.sin(ego_yaw)
    return np.stack([c * p[:, 0] - s * p[:, 1], s * p[:, 0] + c * p[:, 1]], axis=1) + np.asarray(ego_xy).reshape(1, 2)


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
