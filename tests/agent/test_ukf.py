"""UKF state estimate (docs/released-agent.md §2): convergence on synthetic noisy drives, NaN compass, wiring."""

from __future__ import annotations

import json
import math

import filterpy
import numpy as np
import pytest

from automot.agent.automot_agent import AutoMoTAgent
from automot.agent.config import ConfigError, agent_config_from_dict
from automot.agent.geometry import local_to_gps
from automot.agent.state_estimation import (
    GnssEstimator,
    UkfConfig,
    UkfEstimator,
    bicycle_step,
    build_estimator,
    state_mean,
    state_residual,
)
from automot.geometry import wrap_angle

CFG = UkfConfig()
# metres; about the released R = 0.5 m^2 (docs/released-agent.md §2); the leaderboard GNSS noise is of this order
GNSS_STD = 0.7


def _truth(controls: list[tuple[float, float, float]], start: np.ndarray, substeps: int = 10) -> np.ndarray:
    """Ground-truth states integrated more finely than the filter's one step per tick (so the model is not exact)."""
    states, state = [start.copy()], start.copy()
    for control in controls:
        for _ in range(substeps):
            state = bicycle_step(state, CFG.dt / substeps, control, CFG)
        states.append(state)
    return np.array(states)


def _run(truth: np.ndarray, controls: list, seed: int = 0, nan_yaw: range = range(0)) -> tuple[np.ndarray, np.ndarray]:
    """Feed noisy GNSS, exact compass/speed (as in CARLA) and the previous control; return estimates and GNSS.

    Also checks the filter never had to be re-initialised, and, with filterpy 1.x (the released agent's), that
    the covariance never needed a repair.
    """
    rng = np.random.default_rng(seed)
    ukf = UkfEstimator(CFG)
    gnss = truth[:, :2] + rng.normal(scale=GNSS_STD, size=(len(truth), 2))
    estimates = []
    for t, state in enumerate(truth):
        yaw = math.nan if t in nan_yaw else float(wrap_angle(state[2]))
        previous = controls[t - 1] if t > 0 else (0.0, 0.0, 1.0)
        ego = ukf.update(gnss[t], yaw, float(state[3]), previous)
        estimates.append([*ego.position, ego.yaw, ego.speed])
    assert ukf.resets == 0
    if filterpy.__version__.startswith("1."):
        assert ukf.repairs == 0
    return np.array(estimates), gnss


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.sum((a - b) ** 2, axis=1))))


def test_bicycle_model_signs_and_limits():
    start = np.array([0.0, 0.0, 0.0, 5.0])
    straight = bicycle_step(start, 0.05, (0.0, 0.5, 0.0), CFG)
    assert straight[0] == pytest.approx(0.25) and straight[1] == 0.0 and straight[2] == 0.0
    # docs/released-agent.md §2 constants: throttle_accel 0.5633837 m/s^2 per unit throttle, brake_accel
    # -4.952399 m/s^2.
    # One second (20 ticks) of full throttle from 5 m/s: 5 + 0.5633837 = 5.5633837 m/s, x = 0.05 * sum(v_k, k<20)
    # = 0.05 * (100 + 0.5633837 * 0.05 * 190) = 5.2676073 m; one second of braking: 5 - 4.952399 = 0.047601 m/s and
    # x = 0.05 * (100 - 4.952399 * 0.05 * 190) = 2.6476105 m.
    full, braking = start.copy(), start.copy()
    for _ in range(20):
        full = bicycle_step(full, 0.05, (0.0, 1.0, 0.0), CFG)
        braking = bicycle_step(braking, 0.05, (0.0, 0.0, 1.0), CFG)
    np.testing.assert_allclose(full, [5.2676073, 0.0, 0.0, 5.5633837], atol=1e-7)
    np.testing.assert_allclose(braking, [2.6476105, 0.0, 0.0, 0.047601], atol=1e-7)
    assert straight[3] == pytest.approx(5.0 + 0.0140846, abs=1e-7)  # half throttle, one tick: 0.5633837 / 2 / 20
    right = bicycle_step(start, 0.05, (0.5, 0.0, 0.0), CFG)
    assert right[1] > 0 and right[2] > 0  # CARLA: positive steer turns right, i.e. towards +y, yaw increases
    stopped = bicycle_step(np.array([0.0, 0.0, 0.0, 0.1]), 0.05, (0.0, 1.0, 0.3), CFG)
    assert stopped[3] == 0.0  # any brake wins over throttle and speed never goes negative


def test_angle_aware_residual_and_mean():
    a, b = np.array([0.0, 0.0, math.pi - 0.05, 0.0]), np.array([0.0, 0.0, -math.pi + 0.05, 0.0])
    assert state_residual(a, b)[2] == pytest.approx(-0.1)
    sigmas = np.array([[1.0, 2.0, math.pi - 0.1, 3.0], [3.0, 4.0, -math.pi + 0.1, 5.0]])
    mean = state_mean(sigmas, np.array([0.5, 0.5]))
    np.testing.assert_allclose(mean[[0, 1, 3]], [2.0, 3.0, 4.0])
    assert abs(wrap_angle(mean[2] - math.pi)) < 1e-9  # not 0, as a plain average of the angles would give


@pytest.mark.parametrize(
    ("name", "steer", "yaw0"),
    [("straight", 0.0, 0.3), ("turn", 0.35, 0.0), ("turn_across_pi", -0.35, math.pi - 0.2)],
)
def test_ukf_beats_raw_gnss_on_noisy_drive(name, steer, yaw0):
    controls = [(0.0, 0.6, 0.0)] * 60 + [(steer, 0.4, 0.0)] * 140
    truth = _truth(controls, np.array([100.0, -40.0, yaw0, 4.0]))
    est, gnss = _run(truth, controls, seed=len(name))
    settled = slice(40, None)
    ukf_err, gnss_err = _rmse(est[settled, :2], truth[settled, :2]), _rmse(gnss[settled], truth[settled, :2])
    assert ukf_err < 0.5 * gnss_err, (ukf_err, gnss_err)
    assert ukf_err < 0.5
    yaw_err = np.abs(wrap_angle(est[:, 2] - truth[:, 2]))
    assert yaw_err.max() < 1e-3  # the compass is trusted (R yaw 1e-15)
    assert np.all((est[:, 2] >= -math.pi) & (est[:, 2] < math.pi))
    np.testing.assert_allclose(est[:, 3], truth[:, 3], atol=1e-3)
    if name != "straight":
        assert abs(wrap_angle(truth[-1, 2] - truth[0, 2])) > 1.0  # the drive really turned


def test_first_measurement_initialises_the_state():
    ukf = UkfEstimator()
    ego = ukf.update(np.array([3.0, 4.0]), 0.5, 2.0, (0.0, 0.0, 0.0))
    # Initialised from the measurement, then predicted (0.1 m along the heading) and updated with it, as released.
    step = 2.0 * 0.05 * np.array([math.cos(0.5), math.sin(0.5)])
    gain = (0.5 + 1e-4) / (0.5 + 1e-4 + 0.5)  # position Kalman gain: (P0 + Q) / (P0 + Q + R)
    np.testing.assert_allclose(ego.position, np.array([3.0, 4.0]) + step * (1.0 - gain), atol=1e-5)
    assert ego.yaw == pytest.approx(0.5, abs=1e-9) and ego.speed == pytest.approx(2.0, abs=1e-9)
    assert np.all(np.diag(ukf.filter.P) < np.asarray(CFG.p0) + np.asarray(CFG.q))  # the update shrank P
    np.testing.assert_allclose(np.diag(ukf.filter.R), CFG.r)
    np.testing.assert_allclose(np.diag(ukf.filter.Q), CFG.q)
    points = ukf.filter.points_fn
    assert (points.n, points.alpha, points.beta, points.kappa) == (4, 1e-5, 2.0, 0.0)


def test_nan_compass_keeps_the_predicted_heading():
    controls = [(0.3, 0.4, 0.0)] * 120
    truth = _truth(controls, np.array([0.0, 0.0, 1.0, 5.0]))
    est, _ = _run(truth, controls, seed=3, nan_yaw=range(50, 70))
    assert np.all(np.isfinite(est))
    # Dead reckoning with the bicycle model keeps the heading within a fraction of a degree during the gap ...
    assert np.abs(wrap_angle(est[50:70, 2] - truth[50:70, 2])).max() < math.radians(1.0)
    # ... and the compass pulls it back exactly once it reports again.
    assert np.abs(wrap_angle(est[70:, 2] - truth[70:, 2])).max() < 1e-3
    first = UkfEstimator().update(np.zeros(2), math.nan, 0.0, (0.0, 0.0, 0.0))
    assert first.yaw == pytest.approx(-math.pi / 2)  # NaN compass on the first frame: north, as released


def test_indefinite_covariance_is_repaired_and_nan_state_reinitialised():
    ukf = UkfEstimator()
    ukf.update(np.zeros(2), 0.0, 1.0, (0.0, 0.0, 0.0))
    ukf.filter.P = np.diag([0.5, 0.5, -1e-12, 1e-6])  # a hair indefinite: the sigma-point Cholesky fails
    ego = ukf.update(np.array([0.3, 0.0]), 0.0, 1.0, (0.0, 0.0, 0.0))
    assert (ukf.repairs, ukf.resets) == (1, 0)
    assert np.all(np.linalg.eigvalsh(ukf.filter.P) > 0)
    assert 0.0 < ego.position[0] < 0.3  # a real filter step: between the prediction (0.05) and the GNSS (0.3)
    ukf.filter.x = np.full(4, np.nan)  # unrecoverable: start again from the measurement rather than raise
    ego = ukf.update(np.array([1.0, 2.0]), 0.1, 1.0, (0.0, 0.5, 0.0))
    assert ukf.resets == 1 and np.allclose(ego.position, [1.0, 2.0]) and ego.yaw == pytest.approx(0.1)


def test_build_estimator_and_config_validation():
    assert isinstance(build_estimator("gnss"), GnssEstimator)
    assert isinstance(build_estimator("ukf", UkfConfig(dt=0.1)), UkfEstimator)
    with pytest.raises(ValueError, match="unknown state estimator"):
        build_estimator("ekf")
    cfg = agent_config_from_dict({"state_estimator": "ukf", "ukf": {"q": [1e-4, 1e-4, 1e-3, 1e-3]}})
    assert cfg.state_estimator == "ukf" and cfg.ukf.rear_wb == pytest.approx(1.4178275)
    assert agent_config_from_dict(None).state_estimator == "gnss"
    with pytest.raises(ConfigError) as info:
        agent_config_from_dict({"state_estimator": "kalman", "ukf": {"r": [0.5, 0.5]}})
    assert "state_estimator: expected one of 'gnss', 'ukf'" in str(info.value)
    with pytest.raises(ConfigError, match=r"ukf\.r: must be 4 positive variances"):
        agent_config_from_dict({"ukf": {"r": [0.5, 0.5]}})


def _noisy_inputs(specs: list[dict], frame: int, xy: np.ndarray, rng: np.random.Generator, georef) -> dict:
    lat, lon = local_to_gps(*(xy + rng.normal(scale=GNSS_STD, size=2)), *georef)
    data = {}
    for spec in specs:
        kind = spec["type"]
        if kind == "sensor.camera.rgb":
            payload = np.zeros((spec["height"], spec["width"], 4), np.uint8)
        elif kind == "sensor.lidar.ray_cast":
            payload = np.zeros((10, 4), np.float32)
        elif kind == "sensor.other.gnss":
            payload = np.array([lat, lon, 0.0])
        elif kind == "sensor.other.imu":
            payload = np.array([0.0, 0.0, 9.81, 0.0, 0.0, 0.0, math.pi / 2])  # facing east
        else:
            payload = {"speed": 5.0}
        data[spec["id"]] = (frame, payload)
    return data


@pytest.mark.parametrize("kind", ["gnss", "ukf"])
def test_agent_uses_the_estimate_everywhere(tmp_path, kind, agent_kit):
    """Drive east at 5 m/s with noisy GNSS: the UKF pose (route planner, target points, recorder) is smoother."""
    runtime = agent_kit.FakeRuntime(cruise=5.0)
    agent = AutoMoTAgent("localhost", 2000, runtime_factory=lambda cfg: runtime)
    agent.set_global_plan(*agent_kit.plan(agent_kit.STRAIGHT_ROUTE))
    agent.setup(agent_kit.agent_yaml(tmp_path, state_estimator=kind))
    specs, rng = agent.sensors(), np.random.default_rng(7)
    truth = [np.array([5.0 * 0.05 * t, 0.0]) for t in range(100)]
    for t, xy in enumerate(truth):
        agent.run_step(_noisy_inputs(specs, t, xy, rng, agent_kit.GEOREF), 0.05 * t)
    agent.destroy()
    rows = [json.loads(line) for line in (tmp_path / "rec" / agent.save_name / "ticks.jsonl").read_text().splitlines()]
    poses = np.array([[r["ego"]["x"], r["ego"]["y"]] for r in rows])
    err = np.linalg.norm(poses[30:] - np.array(truth[30:]), axis=1)
    # The target point (50 m ahead on the x axis) in the ego frame has y = -ego_y: it moves with the estimate.
    tp_y = np.array([r["target_points"][0][1] for r in rows[30:]])
    np.testing.assert_allclose(tp_y, -poses[30:, 1], atol=2e-3)
    if kind == "ukf":
        assert float(np.sqrt(np.mean(err**2))) < 0.35
    else:
        assert float(np.sqrt(np.mean(err**2))) > 0.6  # raw GNSS noise
