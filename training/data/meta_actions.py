"""Meta-action decisions (now / +1 s / +2 s) derived from the ego's future trajectory.

Each slot k (0, 1, 2 s) looks at the future from t = k:
- **stop**: the speed one window later (``window_s``) is below ``stop_speed``;
- **turn left / right**: the heading changes by more than ``turn_yaw_deg`` within that window;
- **change lane left / right**: given lane ids (privileged recorders), the lane id changes within the lateral
  window; otherwise the displacement over ``lateral_window_s`` perpendicular to the *mean* heading of that
  window exceeds ``lane_offset``. Measuring against the mean heading cancels steady curves (for a circular arc
  the chord is parallel to the mean heading) so a curved highway does not read as a lane change;
- **accelerate / decelerate**: the speed rises / falls by more than ``speed_delta`` within the window;
- **keep** otherwise.
Priority is that order (a vehicle braking to a halt in a turn is "stop"). Left is negative y / decreasing yaw
(ego frame x forward, y right). Slots past the end of the recording repeat the last derived slot.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from automot.training.data.schema import NUM_DECISION_SLOTS


@dataclass(frozen=True)
class MetaActionThresholds:
    window_s: float = 1.0
    lateral_window_s: float = 2.0
    stop_speed: float = 0.5  # m/s
    speed_delta: float = 0.75  # m/s change within window_s
    turn_yaw_deg: float = 15.0  # heading change within window_s
    lane_offset: float = 1.0  # metres, perpendicular to the window's mean heading


def _speeds_from_positions(times: np.ndarray, xy: np.ndarray) -> np.ndarray:
    if len(times) < 2:
        return np.zeros(len(times))
    step = np.linalg.norm(np.diff(xy, axis=0), axis=1) / np.maximum(np.diff(times), 1e-6)
    return np.concatenate([[step[0]], 0.5 * (step[:-1] + step[1:]), [step[-1]]]) if len(step) > 1 else np.r_[step, step]


def derive_meta_actions(
    times: np.ndarray,
    xy: np.ndarray,
    yaw: np.ndarray,
    speed: np.ndarray | None = None,
    lane_ids: np.ndarray | None = None,
    thresholds: MetaActionThresholds | None = None,
) -> list[str]:
    """Decisions for now, +1 s, +2 s.

    times [N] seconds from now (times[0] == 0, the current state), xy [N, 2] ego-frame positions (xy[0] is the
    origin), yaw [N] radians relative to the current heading, speed [N] m/s (None: from positions), lane_ids [N]
    optional integers where a larger id is further right.
    """
    th = thresholds or MetaActionThresholds()
    times = np.asarray(times, dtype=np.float64)
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    yaw = np.unwrap(np.asarray(yaw, dtype=np.float64))
    if len(times) != len(xy) or len(times) != len(yaw):
        raise ValueError(f"derive_meta_actions: times/xy/yaw lengths differ ({len(times)}, {len(xy)}, {len(yaw)})")
    speed = _speeds_from_positions(times, xy) if speed is None else np.asarray(speed, dtype=np.float64)
    end = times[-1]

    def at(series: np.ndarray, t: float) -> np.ndarray:
        t = min(t, end)
        if series.ndim == 1:
            return np.interp(t, times, series)
        return np.array([np.interp(t, times, series[:, k]) for k in range(series.shape[1])])

    decisions: list[str] = []
    for k in range(NUM_DECISION_SLOTS):
        t0 = float(k)
        if t0 >= end and decisions:
            decisions.append(decisions[-1])
            continue
        t1 = t0 + th.window_s
        v0, v1 = float(at(speed, t0)), float(at(speed, t1))
        dyaw = float(at(yaw, t1) - at(yaw, t0))
        if v1 < th.stop_speed:
            decisions.append("stop")
        elif abs(np.degrees(dyaw)) > th.turn_yaw_deg:
            decisions.append("turn left" if dyaw < 0 else "turn right")
        elif (lateral := _lane_change(times, xy, yaw, lane_ids, t0, t0 + th.lateral_window_s, th, at)) != 0:
            decisions.append("change lane left" if lateral < 0 else "change lane right")
        elif v1 - v0 > th.speed_delta:
            decisions.append("accelerate")
        elif v0 - v1 > th.speed_delta:
            decisions.append("decelerate")
        else:
            decisions.append("keep")
    return decisions


def _lane_change(times, xy, yaw, lane_ids, t0: float, t1: float, th: MetaActionThresholds, at) -> int:
    """-1 (left), +1 (right) or 0 within [t0, t1]."""
    if lane_ids is not None:
        ids = np.asarray(lane_ids)
        inside = ids[(times >= t0 - 1e-9) & (times <= t1 + 1e-9)]
        if len(inside) == 0:
            return 0
        delta = int(inside[-1]) - int(inside[0])
        return int(np.sign(delta))
    p0, p1 = at(xy, t0), at(xy, t1)
    mean_heading = 0.5 * (float(at(yaw, t0)) + float(at(yaw, t1)))
    d = p1 - p0
    lateral = -np.sin(mean_heading) * d[0] + np.cos(mean_heading) * d[1]
    if abs(lateral) > th.lane_offset:
        return int(np.sign(lateral))
    return 0
