"""Ego pose estimation: raw GNSS/compass (``gnss``) or the released agent's unscented Kalman filter (``ukf``).

The UKF follows docs/released-agent.md §2: state [x, y, yaw, speed] in CARLA
world metres and radians, Merwe scaled sigma points (filterpy), angle-aware residuals and means, a kinematic
bicycle process model driven by the previous tick's control, and a direct measurement of all four states
(GNSS x/y, compass yaw, speedometer). All constants are ``UkfConfig`` fields (``ukf`` in the agent YAML).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from automot.agent.geometry import compass_to_yaw
from automot.geometry import wrap_angle

log = logging.getLogger(__name__)

YAW = 2  # index of the angle in the state and measurement vectors
_warned_filterpy = False  # the filterpy 2.x parity warning is logged once per process


@dataclass
class UkfConfig:
    """UKF and bicycle-model constants (defaults: the released agent, docs/released-agent.md §2)."""

    dt: float = 0.05  # seconds per tick (20 Hz)
    alpha: float = 1e-5  # Merwe sigma-point spread
    beta: float = 2.0
    kappa: float = 0.0
    p0: list[float] = field(default_factory=lambda: [0.5, 0.5, 1e-6, 1e-6])  # initial covariance diagonal
    r: list[float] = field(default_factory=lambda: [0.5, 0.5, 1e-15, 1e-15])  # measurement noise diagonal
    q: list[float] = field(default_factory=lambda: [1e-4, 1e-4, 1e-3, 1e-3])  # process noise diagonal
    # Kinematic bicycle model fitted to CARLA's default vehicle (values as in the released agent).
    front_wb: float = -0.090769015
    rear_wb: float = 1.4178275
    steer_gain: float = 0.36848336
    brake_accel: float = -4.952399
    throttle_accel: float = 0.5633837


@dataclass(frozen=True)
class EgoState:
    """Estimated pose: CARLA world position (2,), yaw (radians, (-pi, pi]) and speed (m/s)."""

    position: np.ndarray
    yaw: float
    speed: float


Control = tuple[float, float, float]  # (steer, throttle, brake) sent on the previous tick


class StateEstimator(Protocol):
    """Turns one tick of measurements (plus the previous control) into the pose used by the agent.

    ``predict`` is the tick without a usable GNSS fix (ignored by the agent): advance the estimate without a
    position measurement; None when there is no estimate yet. ``reset`` forgets the estimate (the next ``update``
    initialises from its measurement), e.g. after a confirmed GNSS jump.
    """

    def update(self, position: np.ndarray, yaw: float, speed: float, control: Control) -> EgoState: ...

    def predict(self, yaw: float, speed: float, control: Control) -> EgoState | None: ...

    def reset(self) -> None: ...


class GnssEstimator:
    """The raw measurements, unfiltered (the embedded demo profile)."""

    def __init__(self, dt: float = 0.05) -> None:
        self.dt = dt  # seconds per tick, for dead reckoning in predict()
        self.last: EgoState | None = None

    def update(self, position: np.ndarray, yaw: float, speed: float, control: Control) -> EgoState:
        """Return the measurement as the state."""
        self.last = EgoState(np.asarray(position, dtype=np.float64).reshape(2).copy(), float(yaw), float(speed))
        return self.last

    def predict(self, yaw: float, speed: float, control: Control) -> EgoState | None:
        """Dead reckoning: the last position advanced by ``speed`` along ``yaw`` (the last yaw if NaN) for one tick."""
        if self.last is None:
            return None
        heading = float(yaw) if math.isfinite(yaw) else self.last.yaw
        step = float(speed) * self.dt * np.array([math.cos(heading), math.sin(heading)])
        self.last = EgoState(self.last.position + step, heading, float(speed))
        return self.last

    def reset(self) -> None:
        self.last = None


def bicycle_step(state: np.ndarray, dt: float, control: Control, cfg: UkfConfig) -> np.ndarray:
    """One step of the kinematic bicycle model: [x, y, yaw, speed] -> next state.

    Slip angle beta = atan(rear / (front + rear) * tan(steer_gain * steer)); the car moves along yaw + beta and
    turns at speed / rear * sin(beta). Any brake > 0 decelerates at brake_accel, else throttle accelerates
    linearly; speed never goes negative.
    """
    x, y, yaw, speed = (float(v) for v in state)
    steer, throttle, brake = control
    accel = cfg.brake_accel if brake > 0.0 else cfg.throttle_accel * throttle
    wheel = cfg.steer_gain * steer
    beta = math.atan(cfg.rear_wb / (cfg.front_wb + cfg.rear_wb) * math.tan(wheel))
    return np.array(
        [
            x + speed * math.cos(yaw + beta) * dt,
            y + speed * math.sin(yaw + beta) * dt,
            yaw + speed / cfg.rear_wb * math.sin(beta) * dt,
            max(speed + accel * dt, 0.0),
        ]
    )


def state_residual(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a - b with the yaw difference wrapped to (-pi, pi] by the released arithmetic (ukf_utils.py)."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    diff[YAW] = wrap_angle(diff[YAW])
    return diff


def state_mean(sigmas: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean of sigma points; the yaw is the angle of the weighted sum of unit vectors.

    One dot product per column, as the released ``state_mean`` (ukf_utils.py): with alpha 1e-5 the Merwe weights
    are ~1e10, so a different summation (e.g. one matrix-vector product) changes the estimate by ~1e-7 m.
    """
    sigmas = np.asarray(sigmas, dtype=np.float64)
    mean = np.zeros(sigmas.shape[1])
    for col in range(sigmas.shape[1]):
        mean[col] = np.dot(sigmas[:, col], weights)
    mean[YAW] = math.atan2(np.dot(np.sin(sigmas[:, YAW]), weights), np.dot(np.cos(sigmas[:, YAW]), weights))
    return mean


def nearest_positive_definite(matrix: np.ndarray, floor: float) -> np.ndarray:
    """Symmetrised ``matrix`` with eigenvalues clipped to at least ``floor``."""
    sym = 0.5 * (matrix + matrix.T)
    values, vectors = np.linalg.eigh(sym)
    return (vectors * np.maximum(values, floor)) @ vectors.T


def _measure(state: np.ndarray) -> np.ndarray:
    return np.asarray(state, dtype=np.float64).copy()  # every state is measured directly


class UkfEstimator:
    """The released agent's UKF on [x, y, yaw, speed] (needs ``filterpy``).

    The first call initialises the state from the measurement and then, like every later call, predicts one
    tick with the previous control and updates with [x, y, yaw, speed] (the released agent does both on its
    first tick too). A NaN yaw measurement (e.g. an IMU that has not reported yet) is replaced by the predicted
    yaw, so the filter keeps its heading instead of snapping north.
    An indefinite covariance is repaired; an unrecoverable numerical failure re-initialises from the measurement
    rather than stopping the car. filterpy 1.4.x reproduces the released agent; 2.x works but differs slightly.
    """

    def __init__(self, config: UkfConfig | None = None) -> None:
        try:
            import filterpy
            from filterpy.kalman import MerweScaledSigmaPoints, UnscentedKalmanFilter
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "state_estimator 'ukf' needs the filterpy package (pip install 'filterpy>=1.4.5,<2')"
            ) from exc
        global _warned_filterpy
        if not filterpy.__version__.startswith("1.") and not _warned_filterpy:
            _warned_filterpy = True
            log.warning(
                "filterpy %s: its UKF redraws sigma points after predict, unlike 1.4.x used by the released agent; "
                "estimates differ slightly (install 'filterpy>=1.4.5,<2' for parity)",
                filterpy.__version__,
            )
        self.config = cfg = config or UkfConfig()
        points = MerweScaledSigmaPoints(n=4, alpha=cfg.alpha, beta=cfg.beta, kappa=cfg.kappa, subtract=state_residual)
        self.filter = UnscentedKalmanFilter(
            dim_x=4,
            dim_z=4,
            dt=cfg.dt,
            hx=_measure,
            fx=self._process,
            points=points,
            x_mean_fn=state_mean,
            z_mean_fn=state_mean,
            residual_x=state_residual,
            residual_z=state_residual,
        )
        self.filter.Q = np.diag(np.asarray(cfg.q, dtype=np.float64))
        self.filter.R = np.diag(np.asarray(cfg.r, dtype=np.float64))
        self.initialized = False
        self.repairs = 0  # covariance repairs before a prediction (0 with filterpy 1.4.x in normal operation)
        self.resets = 0  # re-initialisations after an unrecoverable numerical failure

    def _process(self, state: np.ndarray, dt: float, control: Control = (0.0, 0.0, 0.0)) -> np.ndarray:
        return bicycle_step(state, dt, control, self.config)

    def _initialise(self, z: np.ndarray) -> None:
        if not math.isfinite(z[YAW]):
            z[YAW] = compass_to_yaw(math.nan)  # the released agent's NaN compass -> 0 (north)
        self.filter.x = z.copy()
        self.filter.P = np.diag(np.asarray(self.config.p0, dtype=np.float64))
        self.initialized = True

    def _predict(self, control: Control) -> None:
        ukf = self.filter
        try:
            ukf.predict(control=control)
        except np.linalg.LinAlgError:
            # The tiny yaw/speed variances (R 1e-15) can leave P a hair indefinite after an update. With
            # filterpy 1.4.x (the released agent's) this does not happen in practice; 2.x redraws sigma points
            # after the prediction and does hit it. Repair P instead of throwing the estimate away.
            self.repairs += 1
            ukf.P = nearest_positive_definite(ukf.P, floor=min(self.config.r))
            ukf.predict(control=control)

    def _step(self, z: np.ndarray, control: Control) -> bool:
        """Predict + update; False on a numerical failure the covariance repair could not fix."""
        ukf = self.filter
        try:
            self._predict(control)
            if not math.isfinite(z[YAW]):
                z[YAW] = ukf.x[YAW]
            ukf.update(z)
        except (np.linalg.LinAlgError, ValueError):  # ValueError: SciPy's finiteness check on a NaN covariance
            return False
        return bool(np.all(np.isfinite(ukf.x)) and np.all(np.isfinite(ukf.P)))

    def update(self, position: np.ndarray, yaw: float, speed: float, control: Control) -> EgoState:
        """One tick: predict with ``control`` (the previous tick's), then update with the measurement."""
        pos = np.asarray(position, dtype=np.float64).reshape(2)
        yaw = float(yaw)
        # The released agent wraps the (already wrapped) compass once more for the filter; repeated here because
        # the second wrap can change the last bit of negative angles.
        z = np.array([pos[0], pos[1], wrap_angle(yaw) if math.isfinite(yaw) else yaw, float(speed)])
        if not self.initialized:
            self._initialise(z)
        if not self._step(z, tuple(float(c) for c in control)):
            self.resets += 1
            log.warning("UKF numerical failure (reset %d); re-initialising from the measurement", self.resets)
            self._initialise(z)
        return self._state()

    def _state(self) -> EgoState:
        x = self.filter.x
        # The filter state is left as is (the released agent never wraps it); only the reported yaw is wrapped,
        # and only when it left (-pi, pi], so in-range values keep their exact bits.
        heading = float(x[YAW])
        if not -math.pi < heading <= math.pi:
            heading = wrap_angle(heading)
        return EgoState(x[:2].copy(), heading, float(x[3]))

    def predict(self, yaw: float, speed: float, control: Control) -> EgoState | None:
        """A tick without a usable GNSS fix: the process model only (no measurement update); None before the first
        update. On a numerical failure the previous estimate is kept."""
        if not self.initialized:
            return None
        saved_x, saved_p = self.filter.x.copy(), self.filter.P.copy()
        try:
            self._predict(tuple(float(c) for c in control))
            ok = bool(np.all(np.isfinite(self.filter.x)) and np.all(np.isfinite(self.filter.P)))
        except (np.linalg.LinAlgError, ValueError):
            ok = False
        if not ok:
            self.filter.x, self.filter.P = saved_x, saved_p
        return self._state()

    def reset(self) -> None:
        self.initialized = False


def build_estimator(kind: str, config: UkfConfig | None = None) -> StateEstimator:
    """``'gnss'`` -> GnssEstimator, ``'ukf'`` -> UkfEstimator(config)."""
    if kind == "gnss":
        return GnssEstimator(config.dt if config is not None else 0.05)
    if kind == "ukf":
        return UkfEstimator(config)
    raise ValueError(f"unknown state estimator {kind!r} (expected 'gnss' or 'ukf')")
