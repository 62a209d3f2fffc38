"""Agent input problems are flagged in the tick record and handled, not silently driven on (issue #12).

Negative speed -> flagged, 0 used. Complex / non-finite GNSS value or a GNSS jump no vehicle can make in one tick
-> flagged, the fix is ignored and the pose estimate kept (dead reckoning / UKF prediction). Expected positions
are derived by hand from the inputs (20 Hz: one tick is 0.05 s; default bound 100 m/s x elapsed + 5 m).
"""

from __future__ import annotations

import json
import math
import threading
import warnings

import numpy as np
import pytest

from automot.agent.automot_agent import AutoMoTAgent
from automot.agent.gnss_gate import ACCEPT, IGNORE, REANCHOR, GnssGate
from automot.agent.state_estimation import GnssEstimator, UkfEstimator
from automot.runtime import build_runtime

DT = 0.05


def _drive(agent, specs, kit, ticks, x0=0.0, speed=5.0, start=0, **overrides):
    """Ticks ``start..start+ticks-1`` moving east at ``speed`` from x0 (exact GNSS); returns the controls."""
    out = []
    for t in range(start, start + ticks):
        data = kit.inputs(specs, t, xy=(x0 + speed * DT * (t - start), 0.0), speed=speed)
        for key, value in overrides.items():
            data[key] = (t, value)
        out.append(agent.run_step(data, DT * t))
    return out


def _rows(tmp_path, agent) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "rec" / agent.save_name / "ticks.jsonl").read_text().splitlines()]


def test_gate_bound_by_hand():
    gate = GnssGate(max_speed=100.0, noise_m=5.0, confirm_ticks=3, tick_s=DT)
    assert gate.check(np.array([0.0, 0.0]), 0.0).action == ACCEPT  # first fix: nothing to compare with
    assert gate.check(np.array([9.9, 0.0]), DT).action == ACCEPT  # 9.9 m <= 100 * 0.05 + 5 = 10 m
    verdict = gate.check(np.array([9.9 + 10.1, 0.0]), 2 * DT)  # 10.1 m > 10 m
    assert verdict.action == IGNORE and "GNSS jump of 10.1 m in 0.050 s" in verdict.flag and "> 10.0 m" in verdict.flag
    # Two ticks after the last accepted fix the bound is 100 * 0.1 + 5 = 15 m.
    assert gate.check(np.array([9.9 + 14.9, 0.0]), 3 * DT).action == ACCEPT
    # A zero or backwards time step counts as one tick.
    assert gate.check(np.array([24.8 + 9.0, 0.0]), 3 * DT).action == ACCEPT
    assert GnssGate(max_speed=None).check(np.array([1e6, 0.0]), 0.0).action == ACCEPT


def test_gate_reanchors_after_consistent_fixes():
    gate = GnssGate(max_speed=100.0, noise_m=5.0, confirm_ticks=3, tick_s=DT)
    gate.check(np.array([0.0, 0.0]), 0.0)
    actions = [gate.check(np.array([500.0 + 0.25 * k, 0.0]), DT * (k + 1)).action for k in range(3)]
    assert actions == [IGNORE, IGNORE, REANCHOR]
    assert gate.check(np.array([500.75, 0.0]), 4 * DT).action == ACCEPT  # the new position is the reference now
    # Wild fixes that do not agree with each other never re-anchor.
    gate = GnssGate(max_speed=100.0, noise_m=5.0, confirm_ticks=3, tick_s=DT)
    gate.check(np.array([0.0, 0.0]), 0.0)
    assert [gate.check(np.array([500.0 * (k + 1), 0.0]), DT * (k + 1)).action for k in range(4)] == [IGNORE] * 4


def test_dead_reckoning_by_hand():
    est = GnssEstimator(dt=DT)
    assert est.predict(0.0, 5.0, (0.0, 0.0, 0.0)) is None  # nothing to advance yet
    est.update(np.array([10.0, 2.0]), 0.0, 5.0, (0.0, 0.0, 0.0))
    ego = est.predict(math.pi / 2, 4.0, (0.0, 0.0, 0.0))  # yaw pi/2 = +y, 4 m/s for 0.05 s = 0.2 m
    np.testing.assert_allclose(ego.position, [10.0, 2.2], atol=1e-12)
    ego = est.predict(math.nan, 4.0, (0.0, 0.0, 0.0))  # NaN yaw: keeps the last heading
    np.testing.assert_allclose(ego.position, [10.0, 2.4], atol=1e-12)
    assert ego.yaw == pytest.approx(math.pi / 2)


def test_ukf_predict_without_fix_follows_the_process_model():
    ukf = UkfEstimator()  # filterpy is a core dependency: no skip when it is missing
    assert ukf.predict(0.0, 5.0, (0.0, 0.0, 0.0)) is None
    ego = ukf.update(np.array([0.0, 0.0]), 0.0, 5.0, (0.0, 0.0, 0.0))
    before = ego.position.copy()
    ego = ukf.predict(0.0, 5.0, (0.0, 0.0, 0.0))  # heading 0, 5 m/s, no throttle: x grows by about 0.25 m
    assert ego.position[0] - before[0] == pytest.approx(0.25, abs=0.02) and abs(ego.position[1]) < 1e-6


def test_negative_speed_is_flagged_and_clamped(tmp_path, agent_kit):
    agent, runtime, specs = agent_kit.make_agent(tmp_path)
    _drive(agent, specs, agent_kit, 4)
    data = agent_kit.inputs(specs, 4, xy=(1.0, 0.0), speed=-1.5)
    control = agent.run_step(data, 4 * DT)
    rec = agent.last_record
    assert rec.input_flags == ["negative speed -1.5 m/s: used 0"] and rec.speed == 0.0
    assert runtime.steps[-1][0].speed == 0.0 and runtime.submits[-1][0].speed == 0.0  # the model never saw it
    assert control.throttle > 0 and rec.error is None  # not a reason to stop
    _drive(agent, specs, agent_kit, 1, x0=1.25, start=5)
    assert agent.last_record.input_flags == []
    agent.destroy()
    rows = _rows(tmp_path, agent)
    assert rows[4]["input_flags"] == ["negative speed -1.5 m/s: used 0"] and rows[5]["input_flags"] == []


@pytest.mark.parametrize(
    "bad, words",
    [
        (np.array([np.nan, 11.5, 0.5]), "non-finite lat nan"),
        (np.array([48.1, np.inf, 0.5]), "non-finite lat"),
        (np.array([48.1, 11.5, np.nan]), "alt nan"),
        (np.array([48.1 + 1e-3j, 11.5, 0.5]), "complex values"),
        ([48.1 + 0j, 11.5, 0.5], "complex values"),
        (np.array([95.0, 11.5, 0.5]), "lat 95.0"),
    ],
)
def test_bad_gnss_value_is_ignored_and_flagged(tmp_path, agent_kit, bad, words):
    agent, runtime, specs = agent_kit.make_agent(tmp_path)
    _drive(agent, specs, agent_kit, 5)  # x = 0.0 .. 1.0 at 5 m/s
    before = agent.last_record.ego_pose
    data = agent_kit.inputs(specs, 5, xy=(1.25, 0.0), speed=5.0)
    data["GPS"] = (5, bad)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ComplexWarning: the imaginary part is never silently dropped
        control = agent.run_step(data, 5 * DT)
    rec = agent.last_record
    assert rec.error is None and control.throttle > 0  # one bad fix is no reason to brake
    assert len(rec.input_flags) == 1 and "GNSS fix unusable" in rec.input_flags[0] and words in rec.input_flags[0]
    assert "fix ignored, estimate kept" in rec.input_flags[0]
    # Raw estimator: dead reckoning from the last pose, 5 m/s east for one tick = +0.25 m.
    assert rec.ego_pose[0] == pytest.approx(before[0] + 0.25, abs=1e-6) and rec.ego_pose[1] == pytest.approx(before[1])
    _drive(agent, specs, agent_kit, 1, x0=1.5, start=6)  # a good fix again: accepted, no flag
    assert agent.last_record.input_flags == [] and agent.last_record.ego_pose[0] == pytest.approx(1.5, abs=0.02)
    agent.destroy()


def test_gnss_jump_is_ignored_estimate_kept_then_reanchored(tmp_path, agent_kit):
    agent, runtime, specs = agent_kit.make_agent(tmp_path)
    _drive(agent, specs, agent_kit, 5)
    x_last = agent.last_record.ego_pose[0]
    for t in (5, 6):  # 300 m ahead in one tick: impossible
        agent.run_step(agent_kit.inputs(specs, t, xy=(300.0 + 0.25 * (t - 5), 0.0), speed=5.0), t * DT)
        rec = agent.last_record
        assert rec.error is None and len(rec.input_flags) == 1 and "GNSS jump of" in rec.input_flags[0]
        assert rec.ego_pose[0] == pytest.approx(x_last + 0.25 * (t - 4), abs=1e-6)  # dead reckoning
    # The third consistent fix far away: the vehicle really is there.
    agent.run_step(agent_kit.inputs(specs, 7, xy=(300.5, 0.0), speed=5.0), 7 * DT)
    rec = agent.last_record
    assert "re-anchored" in rec.input_flags[0] and rec.ego_pose[0] == pytest.approx(300.5, abs=0.02)
    agent.destroy()
    rows = _rows(tmp_path, agent)
    assert ["GNSS jump" in f for r in rows[5:7] for f in r["input_flags"]] == [True, True]


def test_without_a_usable_fix_the_tick_fails_and_brakes(tmp_path, agent_kit):
    agent, _, specs = agent_kit.make_agent(tmp_path, gnss={"max_ignored_ticks": 2})
    data = agent_kit.inputs(specs, 0)
    data["GPS"] = (0, np.array([np.nan, 0.0, 0.0]))  # first tick: no estimate to keep
    assert agent_kit.is_full_brake(agent.run_step(data, 0.0))
    assert "usable first GNSS fix" in agent.last_record.error and "GPS" in agent.last_record.error
    _drive(agent, specs, agent_kit, 4, start=1)
    for t in (5, 6, 7):  # 2 ticks are bridged, the third fails
        data = agent_kit.inputs(specs, t, speed=5.0)
        data["GPS"] = (t, np.array([np.nan, 0.0, 0.0]))
        control = agent.run_step(data, t * DT)
    assert agent_kit.is_full_brake(control) and "at least every 2 ticks" in agent.last_record.error
    agent.destroy()


def test_released_profile_inputs_without_problems_are_not_flagged(tmp_path, agent_kit):
    agent, _, specs = agent_kit.make_agent(tmp_path, state_estimator="ukf")
    _drive(agent, specs, agent_kit, 8)
    agent.destroy()
    assert all(r["input_flags"] == [] for r in _rows(tmp_path, agent))


def test_agent_records_say_why_when_the_refresh_hangs(tmp_path, agent_kit, tiny_model, monkeypatch):
    """Real sync runtime whose slow path hangs from its 2nd refresh: ticks keep going, records name the overrun."""
    release = threading.Event()
    real = tiny_model.prefill
    calls = []

    def prefill(obs, capacity=None):
        calls.append(1)
        if len(calls) >= 2:
            release.wait(60)
        return real(obs, capacity=capacity)

    monkeypatch.setattr(tiny_model, "prefill", prefill)

    def factory(cfg):
        opts = dict(first_snapshot_timeout_s=30.0, refresh_timeout_s=0.03, max_snapshot_age_ticks=4)  # 1st: healthy
        return build_runtime(tiny_model, mode="sync", max_snapshot_age_s=None, close_timeout_s=5.0, **opts)

    agent = AutoMoTAgent("localhost", 2000, runtime_factory=factory)
    agent.set_global_plan(*agent_kit.plan(agent_kit.STRAIGHT_ROUTE))
    agent.setup(agent_kit.agent_yaml(tmp_path))
    specs = agent.sensors()
    try:
        controls = _drive(agent, specs, agent_kit, 12, speed=0.0)
        stats = agent.runtime.stats()
    finally:
        release.set()
        agent.destroy()
    rows = _rows(tmp_path, agent)
    assert stats["refresh_timeouts"] == 1 and len(calls) == 2  # one wait, later due refreshes skipped
    driving = rows[3:]  # 3 warm-up ticks; refresh 1 at tick 3 (frame 3), refresh 2 (tick 4) hangs
    assert driving[0]["refresh_overrun"] is None and not driving[0]["safe_stop"]
    for row in driving[1:]:
        assert "refresh of frame 4 still running" in row["refresh_overrun"]
    ages = [r["snapshot"]["age_ticks"] for r in driving]
    assert ages == list(range(len(driving)))  # real ages of the frame-3 snapshot
    for row, control in zip(driving, controls[3:]):
        if row["snapshot"]["age_ticks"] > 4:
            assert row["safe_stop"] and row["safe_stop_kind"] == "stale_snapshot"
            assert "refresh of frame 4" in row["safe_stop_reason"] and row["control"]["mode"] == "safe_stop"
            assert agent_kit.is_full_brake(control)
        else:
            assert not row["safe_stop"]
