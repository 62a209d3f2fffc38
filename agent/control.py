"""Path/waypoint -> steer/throttle/brake, plus the released agent's safety heuristics (pure numpy/scipy).

Constants are the released AutoMoT ``control_pid`` values (docs/released-agent.md §4 and
§6); every one is a config field. Frames: ego, x forward, y right; steer > 0 is right.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from scipy.interpolate import PchipInterpolator

from automot.geometry import wrap_angle_left_closed


@dataclass
class LateralConfig:
    """PDM-Lite-style lateral PID on a lookahead point of the resampled path (docs/released-agent.md §4)."""

    kp: float = 3.118
    kd: float = 1.3782508892109167
    ki: float = 0.6406067986034124
    speed_scale: float = 0.9755321901954155  # lookahead samples per km/h
    speed_offset: float = 1.195  # lookahead samples at standstill, before clamping
    min_lookahead: int = 24  # in resample steps: 24 x 0.1 m = 2.4 m
    max_lookahead: int = 105  # 10.5 m
    window: int = 6  # errors averaged for the integral term
    resample_step: float = 0.1  # metres between PCHIP samples


@dataclass
class LongitudinalConfig:
    """Speed PID on desired speed = 2 |wp[1] - wp[0]| (waypoints 0.5 s apart; docs/released-agent.md §4)."""

    kp: float = 1.75
    ki: float = 1.0
    kd: float = 2.0
    window: int = 20
    clip_delta: float = 1.0  # speed error clipped to [0, clip_delta] m/s
    max_throttle: float = 1.0
    brake_speed: float = 0.4  # brake when the desired speed is below this (m/s)
    brake_ratio: float = 1.1  # brake when speed / desired exceeds this
    waypoint_dt: float = 0.5  # seconds between waypoints


@dataclass
class SafetyConfig:
    """Warm-up, hard speed cap and stuck creep (docs/released-agent.md §4-6)."""

    warmup_ticks: int = 31  # full brake on ticks 0..30 while buffers fill; model first runs at tick 31
    speed_cap_kmh: float = 35.0
    stuck_speed: float = 0.1  # below this the stuck counter increments (m/s)
    unstuck_speed: float = 0.2  # above this it resets
    stuck_ticks: int = 300  # creep once the counter exceeds this
    creep_ticks: int = 14
    creep_throttle: float = 0.4  # minimum throttle while creeping
    # Routes that start parked must not creep into the car in front: if the ego moved less than
    # parked_start_min_move metres in the first parked_start_ticks after warm-up, creep is off for the route.
    parked_start_guard: bool = True
    parked_start_ticks: int = 200
    parked_start_min_move: float = 6.0


@dataclass
class EscapeConfig:
    """Parking-deadlock escape (docs/released-agent.md §6).

    Tick numbers count every ``run_step`` call (warm-up included), like the released agent's step counter;
    snapshots are taken on driving ticks only (the model-step path), so with the defaults the earliest trigger
    is tick 1700 (oldest snapshot at tick 200, 1500 ticks old).
    """

    enabled: bool = False
    snapshot_every: int = 200  # position snapshot when tick % snapshot_every == 0 (none while escaping)
    # Snapshots older than this are dropped when a new one is taken; the oldest must be this old to trigger.
    window_ticks: int = 1500
    max_displacement: float = 5.0  # deadlock: every snapshot within this many metres of the oldest one
    # Forced-control timer; it counts down on the trigger tick too, so control is forced for duration_ticks - 1
    # ticks (mot_b2d_agent.py 278fa5a, _get_escape_target_points).
    duration_ticks: int = 40
    cooldown_ticks: int = 2400  # no new escape this long after one ends
    pop_points: int = 5  # route points dropped on trigger ...
    keep_points: int = 3  # ... never leaving fewer than this
    # Model target-point override (ego frame, x forward, y right): TP (target_x, lateral), next TP
    # (next_target_x, lateral), lateral = target_y + target_y_per_attempt * attempt (attempt counted from 1).
    # The released code (and docs/released-agent.md §6) calls this "to the left" while steering left; in the
    # ego frame (docs/released-agent.md §2) +y is to the right. The numbers are reproduced as released.
    target_x: float = 3.0
    next_target_x: float = 6.0
    target_y: float = 5.0
    target_y_per_attempt: float = 1.5
    steer: float = -0.65  # forced steer (negative = left)
    throttle: float = 0.45  # forced throttle, brake off
    end_heading_deg: float = 25.0  # ends early once the heading changed by more than this ...
    end_displacement: float = 6.0  # ... or the ego moved more than this many metres from the start


@dataclass
class ControlConfig:
    """All controller settings (the ``control`` section of the agent YAML)."""

    lateral: LateralConfig = field(default_factory=LateralConfig)
    longitudinal: LongitudinalConfig = field(default_factory=LongitudinalConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    escape: EscapeConfig = field(default_factory=EscapeConfig)


@dataclass(frozen=True)
class ControlCommand:
    """Controller output; ``mode`` says which rule produced it (drive, warmup, hold, creep, escape, speed_cap)."""

    steer: float
    throttle: float
    brake: float
    mode: str
    desired_speed: float = 0.0
    lookahead_m: float = 0.0
    stuck_ticks: int = 0


class EscapePolicy(Protocol):
    """Hook for a parking-deadlock escape (docs/released-agent.md §6; implemented by agent.escape.ParkingEscape).

    On every driving tick (not during warm-up) the agent calls, in this order: ``update`` with the estimated
    pose, after the route planner has advanced and before the target points are computed (so it may drop route
    points); ``adjust_target_points``, which may replace the (2, 2) ego-frame target points the model sees
    (prompt and action expert alike); then the controller calls ``override`` after the PIDs, which returns a
    command used instead of the creep rule, or None. The speed cap still applies afterwards.
    """

    def update(self, tick: int, position: np.ndarray, yaw: float) -> None: ...

    def adjust_target_points(self, tick: int, target_points: np.ndarray) -> np.ndarray: ...

    def override(self, tick: int, position: np.ndarray | None, speed: float) -> ControlCommand | None: ...


class WindowPID:
    """PID whose integral is the mean of the last ``window`` errors and derivative the last difference.

    ``zero_filled``: the window starts full of zeros (the released speed PIDController, docs/released-agent.md §4);
    otherwise it starts empty, so the integral averages only the errors seen so far and the first derivative is 0 (the
    PDM-Lite LateralPIDController the released agent steers with).
    """

    def __init__(self, kp: float, ki: float, kd: float, window: int, zero_filled: bool = True) -> None:
        self.kp, self.ki, self.kd = kp, ki, kd
        size = max(int(window), 1)
        self._errors: deque[float] = deque([0.0] * size if zero_filled else [], maxlen=size)

    def push(self, error: float) -> tuple[float, float]:
        """Push one error and return (integral, derivative)."""
        self._errors.append(float(error))
        integral = float(np.mean(self._errors))
        derivative = self._errors[-1] - self._errors[-2] if len(self._errors) >= 2 else 0.0
        return integral, derivative

    def step(self, error: float) -> float:
        """Push one error and return the PID output."""
        integral, derivative = self.push(error)
        return self.kp * error + self.ki * integral + self.kd * derivative


def resample_path(path: np.ndarray, step: float) -> np.ndarray:
    """Origin-prepended path resampled every ``step`` metres of arc length with PCHIP (docs/released-agent.md §4).

    A tiny index-proportional offset keeps the arc length strictly increasing when points repeat
    (e.g. a standstill path), which PCHIP requires. Returns at least one point.
    """
    pts = np.vstack([np.zeros((1, 2)), np.asarray(path, dtype=np.float64).reshape(-1, 2)])
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
    arc = arc + 1e-4 * np.arange(len(arc))
    samples = np.arange(step, arc[-1], step)
    if samples.size == 0:
        return pts[-1:].copy()
    return PchipInterpolator(arc, pts, axis=0)(samples)


class LateralController:
    """Steer from the heading error to a speed-dependent lookahead point on the path."""

    def __init__(self, config: LateralConfig) -> None:
        self.config = config
        self._pid = WindowPID(config.kp, config.ki, config.kd, config.window, zero_filled=False)

    def lookahead_index(self, speed: float, n_samples: int) -> int:
        """Lookahead in resample steps: clip(speed_scale * km/h + offset, min, max), at most the last sample."""
        cfg = self.config
        raw = cfg.speed_scale * (max(speed, 0.0) * 3.6) + cfg.speed_offset  # km/h first, as released
        return int(min(np.clip(raw, cfg.min_lookahead, cfg.max_lookahead), n_samples - 1))

    def step(self, path: np.ndarray, speed: float) -> tuple[float, float]:
        """Return (steer in [-1, 1] rounded to 3 decimals, lookahead distance in metres)."""
        samples = resample_path(path, self.config.resample_step)
        idx = self.lookahead_index(speed, len(samples))
        target = samples[idx]
        # Wrapped to [-pi, pi), not (-pi, pi], with the released LateralPIDController's arithmetic (nav_planner.py),
        # so the result is bit-identical to it (atan2 is in (-pi, pi]; only exactly pi moves to -pi).
        heading_error = wrap_angle_left_closed(float(np.arctan2(target[1], target[0])))
        error = heading_error * 180.0 / math.pi / 90.0  # a 90 degree error is 1 (released operation order)
        integral, derivative = self._pid.push(error)
        pid = self._pid
        # Terms summed in the released LateralPIDController's order (P, D, I) for bit-identical steering.
        steer = np.clip(np.float64(pid.kp * error + pid.kd * derivative + pid.ki * integral), -1.0, 1.0)
        # NumPy rounding (half-even on steer * 1000) as the released control_pid, whose round() gets a NumPy
        # float; Python's round() on a float rounds the exact decimal value and differs on ties like 0.0005.
        return float(np.round(steer, 3)), float(np.linalg.norm(target))


class LongitudinalController:
    """Throttle from the speed PID, brake from the desired-speed rules."""

    def __init__(self, config: LongitudinalConfig) -> None:
        self.config = config
        self._pid = WindowPID(config.kp, config.ki, config.kd, config.window)

    def desired_speed(self, waypoints: np.ndarray) -> float:
        """Speed implied by the first waypoint segment (m/s)."""
        wps = np.asarray(waypoints, dtype=np.float64).reshape(-1, 2)
        if len(wps) < 2:
            return 0.0
        return float(np.linalg.norm(wps[1] - wps[0])) / self.config.waypoint_dt

    def step(self, waypoints: np.ndarray, speed: float) -> tuple[float, bool, float]:
        """Return (throttle, brake, desired speed)."""
        cfg = self.config
        desired = self.desired_speed(waypoints)
        brake = desired < cfg.brake_speed or speed / max(desired, 1e-5) > cfg.brake_ratio
        error = float(np.clip(desired - speed, 0.0, cfg.clip_delta))
        # The PID is stepped on braking ticks too so its window tracks time, as in the released agent.
        throttle = float(np.clip(self._pid.step(error), 0.0, cfg.max_throttle))
        return (0.0 if brake else throttle), brake, desired


class DrivingController:
    """Lateral + longitudinal PIDs followed by stuck creep, an optional escape hook and the speed cap."""

    def __init__(self, config: ControlConfig | None = None, escape: EscapePolicy | None = None) -> None:
        self.config = config or ControlConfig()
        self.lateral = LateralController(self.config.lateral)
        self.longitudinal = LongitudinalController(self.config.longitudinal)
        self.escape = escape
        self.stuck_counter = 0
        self.force_move = 0
        self.creep_enabled = True
        self._anchor: np.ndarray | None = None
        self._guard_decided = False

    def in_warmup(self, tick: int) -> bool:
        """True on the ticks that are full brake while the history buffers fill."""
        return tick < self.config.safety.warmup_ticks

    def hold(self, mode: str = "hold") -> ControlCommand:
        """Full brake, zero steer; for warm-up, safe stops and errors. Leaves the stuck counter alone
        because a deliberate stop by the agent itself is not the model being stuck."""
        return ControlCommand(steer=0.0, throttle=0.0, brake=1.0, mode=mode, stuck_ticks=self.stuck_counter)

    def step(
        self,
        tick: int,
        path: np.ndarray,
        waypoints: np.ndarray,
        speed: float,
        position: np.ndarray | None = None,
    ) -> ControlCommand:
        """One control step from the model's path (N, 2) and speed waypoints (M, 2) in the ego frame."""
        if self.in_warmup(tick):
            return self.hold("warmup")
        safety = self.config.safety
        speed = float(speed)
        steer, lookahead = self.lateral.step(path, speed)
        throttle, brake, desired = self.longitudinal.step(waypoints, speed)
        mode = "brake" if brake else "drive"

        if speed < safety.stuck_speed:
            self.stuck_counter += 1
        elif speed > safety.unstuck_speed:
            self.stuck_counter = 0
        self._update_parked_start_guard(tick, position)

        override = self.escape.override(tick, position, speed) if self.escape is not None else None
        if override is not None:
            steer, throttle, brake, mode = override.steer, override.throttle, override.brake > 0.0, override.mode
            # An escape restarts the stuck counter and cancels creep, on its first tick and every tick it runs,
            # so creep does not fire right after it (released: _activate_parking_escape and run_step).
            self.stuck_counter = 0
            self.force_move = 0
        else:
            if self.stuck_counter > safety.stuck_ticks and self.creep_enabled:
                self.force_move = safety.creep_ticks  # re-armed every tick while still stuck
            if self.force_move > 0:
                throttle, brake, mode = max(safety.creep_throttle, throttle), False, "creep"
                self.force_move -= 1

        if speed * 3.6 > safety.speed_cap_kmh:
            throttle, brake, mode = 0.0, True, "speed_cap"
        return ControlCommand(
            steer=steer,
            throttle=float(throttle),
            brake=1.0 if brake else 0.0,
            mode=mode,
            desired_speed=desired,
            lookahead_m=lookahead,
            stuck_ticks=self.stuck_counter,
        )

    def _update_parked_start_guard(self, tick: int, position: np.ndarray | None) -> None:
        safety = self.config.safety
        if not safety.parked_start_guard or self._guard_decided or position is None:
            return
        pos = np.asarray(position, dtype=np.float64).reshape(2)
        if self._anchor is None:
            self._anchor = pos.copy()  # position at the first model step
            return
        if tick >= safety.warmup_ticks + safety.parked_start_ticks:
            self._guard_decided = True
            self.creep_enabled = float(np.linalg.norm(pos - self._anchor)) >= safety.parked_start_min_move
