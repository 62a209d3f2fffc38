"""VehicleControl -> ego acceleration and front-wheel angle for highway-env's kinematic bicycle.

Longitudinal (m/s^2), no reverse gear, speed clipped to >= 0:
    accel = throttle * a_max * (1 - v / v_max) - max(brake, hand_brake) * b_max - (c_roll + c_drag * v^2)
The resistance term only acts while moving, and at standstill braking can only hold the car, never push it
backwards. ``reverse=True`` is treated as "no drive" (the embedded world has no reverse gear).

Lateral: road-wheel angle delta = steer * max_steer; the car's path curvature is that of a centre-of-gravity
kinematic bicycle with the MKZ's wheelbase L and rear overhang l_r:
    beta = atan(l_r / L * tan(delta)),   kappa = sin(beta) / l_r
capped at |kappa| <= mu_g / v^2 (tyres saturate; CARLA's PhysX car slides rather than following the wheel).
highway-env's ``Vehicle`` is the same bicycle with l_r = L / 2 = LENGTH / 2, so we hand it the wheel angle that
yields the same curvature: beta_hw = asin(kappa * LENGTH / 2), delta_hw = atan(2 * tan(beta_hw)).

Parameter choice (CARLA ``vehicle.lincoln.mkz_2020``-like): wheelbase 2.875 m, 4.9 x 2.1 m box; a_max 3.5 m/s^2
(0-100 km/h in ~8 s); b_max 8 m/s^2 (~0.8 g full brake); max_steer 0.7 rad (40 deg). CARLA's wheel physics
nominally allow 70 deg, but the slip-free kinematic model would then turn on a ~1 m radius; 40 deg sits between
a sedan's mechanical lock (~35 deg, 5.9 m turning radius) and the effective lock CARLA's slipping tyres reach, so
controllers tuned in CARLA (steer ~ heading error) keep a similar gain here. Positive steer turns right, i.e.
increases CARLA yaw (and highway-env heading).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class VehicleParams:
    """Ego vehicle model constants (SI units)."""

    a_max: float = 3.5
    b_max: float = 8.0
    v_max: float = 45.0
    c_roll: float = 0.15
    c_drag: float = 3.5e-4
    max_steer: float = 0.7
    wheelbase: float = 2.875
    rear_overhang: float = 1.45  # centre of gravity to rear axle
    mu_g: float = 8.0  # lateral acceleration limit, ~0.8 g
    length: float = 4.9
    width: float = 2.1
    height: float = 1.5


DEFAULT_PARAMS = VehicleParams()


@dataclass(frozen=True)
class ControlInput:
    """A validated, clipped VehicleControl."""

    throttle: float
    steer: float
    brake: float
    hand_brake: bool = False
    reverse: bool = False


def read_control(control: Any) -> ControlInput:
    """Validate a ``VehicleControl``-like object (carla or contract stand-in) and clip it to the CARLA ranges."""
    try:
        throttle, steer, brake = float(control.throttle), float(control.steer), float(control.brake)
    except (AttributeError, TypeError, ValueError) as exc:
        raise TypeError(f"run_step must return a VehicleControl, got {type(control).__name__}") from exc
    if not all(math.isfinite(v) for v in (throttle, steer, brake)):
        raise ValueError(f"non-finite control: throttle={throttle} steer={steer} brake={brake}")
    return ControlInput(
        throttle=min(max(throttle, 0.0), 1.0),
        steer=min(max(steer, -1.0), 1.0),
        brake=min(max(brake, 0.0), 1.0),
        hand_brake=bool(getattr(control, "hand_brake", False)),
        reverse=bool(getattr(control, "reverse", False)),
    )


def longitudinal_accel(control: ControlInput, speed: float, dt: float, params: VehicleParams = DEFAULT_PARAMS) -> float:
    """Acceleration (m/s^2) for one step of ``dt``; never lets the speed go below zero."""
    v = max(speed, 0.0)
    drive = 0.0 if control.reverse else control.throttle * params.a_max * max(0.0, 1.0 - v / params.v_max)
    brake = (1.0 if control.hand_brake else control.brake) * params.b_max
    resist = params.c_roll + params.c_drag * v * v if v > 0.0 else 0.0
    accel = drive - brake - resist
    return max(accel, -v / dt)  # braking stops the car; it does not reverse it


def path_curvature(steer: float, speed: float, params: VehicleParams = DEFAULT_PARAMS) -> float:
    """Signed path curvature (1/m, + = right) of the ego for a steer command, with the tyre-friction cap."""
    delta = steer * params.max_steer
    beta = math.atan(params.rear_overhang / params.wheelbase * math.tan(delta))
    kappa = math.sin(beta) / params.rear_overhang
    limit = params.mu_g / max(speed * speed, 1e-6)
    return max(-limit, min(limit, kappa))


def highway_wheel_angle(curvature: float, hw_length: float) -> float:
    """Front-wheel angle for highway-env's ``Vehicle.step`` (l_r = LENGTH / 2) that produces ``curvature``."""
    sin_beta = max(-0.95, min(0.95, curvature * hw_length / 2.0))
    return math.atan(2.0 * math.tan(math.asin(sin_beta)))


def control_to_action(
    control: ControlInput, speed: float, dt: float, hw_length: float, params: VehicleParams = DEFAULT_PARAMS
) -> dict[str, float]:
    """highway-env action dict ``{'acceleration', 'steering'}`` for one step."""
    kappa = path_curvature(control.steer, speed, params)
    return {
        "acceleration": longitudinal_accel(control, speed, dt, params),
        "steering": highway_wheel_angle(kappa, hw_length),
    }


def steer_for_curvature(curvature: float, params: VehicleParams = DEFAULT_PARAMS) -> float:
    """Inverse of ``path_curvature`` without the friction cap: steer command in [-1, 1] for a wanted curvature."""
    sin_beta = max(-0.99, min(0.99, curvature * params.rear_overhang))
    tan_delta = math.tan(math.asin(sin_beta)) * params.wheelbase / params.rear_overhang
    return max(-1.0, min(1.0, math.atan(tan_delta) / params.max_steer))


def throttle_brake_for_accel(accel: float, speed: float, params: VehicleParams = DEFAULT_PARAMS) -> tuple[float, float]:
    """Inverse of the longitudinal model: (throttle, brake) that produce ``accel`` at ``speed``."""
    v = max(speed, 0.0)
    resist = params.c_roll + params.c_drag * v * v if v > 0.0 else 0.0
    need = accel + resist
    if need >= 0.0:
        gain = params.a_max * max(1e-3, 1.0 - v / params.v_max)
        return min(need / gain, 1.0), 0.0
    return 0.0, min(-need / params.b_max, 1.0)
