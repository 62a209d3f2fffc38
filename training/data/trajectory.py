"""Building samples from a recorded pose track (world frame), shared by the real-layout readers and the collector.

For frame i: waypoints = future positions at 0.5 .. 3.0 s interpolated in time and moved into frame i's ego
frame; path = the driven future continued through the target points, resampled every metre; decisions from
``derive_meta_actions``; history = the frames closest to 0.75 / 0.5 / 0.25 s earlier (the agent's 15 / 10 / 5
tick offsets at 20 Hz). Frames whose recording ends before the 3 s horizon yield no sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from automot.geometry import world_to_ego, wrap_angle
from automot.training.data.geometry import build_path, interpolate_in_time
from automot.training.data.meta_actions import MetaActionThresholds, derive_meta_actions
from automot.training.data.schema import (
    NUM_ROUTE_POINTS,
    NUM_WAYPOINTS,
    PATH_SPACING,
    WAYPOINT_DT,
    QAPair,
    SampleRecord,
)

HISTORY_S = (0.75, 0.5, 0.25)
PATH_LOOKAHEAD_S = 8.0  # driven future used for the path (long enough for 20 m at urban speeds)


@dataclass
class PoseTrack:
    """Per-frame ego state of one episode. Target points are given either in world or in ego coordinates."""

    frames: np.ndarray  # [N] frame indices (file numbers), increasing
    times: np.ndarray  # [N] seconds
    xy: np.ndarray  # [N, 2] world
    yaw: np.ndarray  # [N] world, radians
    speed: np.ndarray  # [N] m/s
    target_points_world: np.ndarray | None = None  # [N, 2, 2]
    target_points_ego: np.ndarray | None = None  # [N, 2, 2]
    lane_ids: np.ndarray | None = None  # [N] privileged lane index (larger = further right), optional

    def __post_init__(self) -> None:
        n = len(self.frames)
        for name in ("times", "xy", "yaw", "speed"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"PoseTrack.{name}: {len(getattr(self, name))} entries for {n} frames")
        if (self.target_points_world is None) == (self.target_points_ego is None):
            raise ValueError("PoseTrack: give exactly one of target_points_world / target_points_ego")


def _history(track: PoseTrack, i: int, history_s: tuple[float, ...]) -> list[int]:
    out = []
    for s in sorted(history_s, reverse=True):  # oldest first
        j = int(np.argmin(np.abs(track.times[: i + 1] - (track.times[i] - s))))
        out.append(int(track.frames[j]))
    return out


def sample_at(
    track: PoseTrack,
    i: int,
    history_s: tuple[float, ...] = HISTORY_S,
    thresholds: MetaActionThresholds | None = None,
    qa: list[QAPair] | None = None,
) -> SampleRecord | None:
    """The sample of the i-th frame of ``track``, or None when the recording does not cover the horizon."""
    t = track.times - track.times[i]
    fut = slice(i, len(t))
    local = world_to_ego(track.xy[fut], track.xy[i], float(track.yaw[i]))
    rel_yaw = np.asarray(wrap_angle(track.yaw[fut] - track.yaw[i]), dtype=np.float64)
    horizon = WAYPOINT_DT * np.arange(1, NUM_WAYPOINTS + 1)
    waypoints = interpolate_in_time(t[fut], local, horizon)
    if waypoints is None:
        return None
    if track.target_points_ego is not None:
        tps = np.asarray(track.target_points_ego[i], dtype=np.float64)
    else:
        tps = world_to_ego(track.target_points_world[i], track.xy[i], float(track.yaw[i]))
    ahead = t[fut] <= PATH_LOOKAHEAD_S
    path = build_path(local[ahead][1:], tps, PATH_SPACING, NUM_ROUTE_POINTS)
    lanes = None if track.lane_ids is None else track.lane_ids[fut]
    decisions = derive_meta_actions(t[fut], local, rel_yaw, track.speed[fut], lanes, thresholds)
    return SampleRecord(
        frame=int(track.frames[i]),
        history=_history(track, i, history_s),
        speed=float(track.speed[i]),
        target_points=tps,
        path=path,
        waypoints=waypoints,
        decisions=decisions,
        qa=list(qa or []),
    )


def samples_from_track(
    track: PoseTrack,
    every: int = 1,
    history_s: tuple[float, ...] = HISTORY_S,
    thresholds: MetaActionThresholds | None = None,
) -> list[SampleRecord]:
    """Samples for every ``every``-th frame that has a full future horizon."""
    out = []
    for i in range(0, len(track.frames), every):
        rec = sample_at(track, i, history_s, thresholds)
        if rec is not None:
            out.append(rec)
    return out
