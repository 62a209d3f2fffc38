"""An IMU compass that cannot be a heading (non-finite, or outside [-2 pi, 2 pi]) is flagged in the tick record and
ignored like a bad GNSS fix: the heading stays the last valid one, so the target points the model gets (and the
steering that follows) do not jump for a tick (issue 20, case 8)."""

from __future__ import annotations

import math

import numpy as np
import pytest

DT = 0.05
EAST = math.pi / 2  # compass pi/2: facing east, along the 150 m route


def _run(tmp_path, kit, bad_compass: float | None):
    """Six ticks facing east; tick 4 gets ``bad_compass`` (None: the same valid reading)."""
    agent, runtime, specs = kit.make_agent(tmp_path)
    records = []
    try:
        for t in range(6):
            compass = bad_compass if (t == 4 and bad_compass is not None) else EAST
            agent.run_step(kit.inputs(specs, t, xy=(0.25 * t, 0.0), compass=compass, speed=5.0), DT * t)
            records.append(agent.last_record)
    finally:
        agent.destroy()
    return records, runtime


def _given(runtime, frame: int) -> np.ndarray:
    """The target points the runtime was given at ``frame``."""
    (state,) = [state for state, _, f in runtime.steps if f == frame]
    return state.target_points


@pytest.mark.parametrize("bad", [1e6, -50.0, 2 * math.pi + 0.01, math.inf, -math.inf, math.nan])
def test_compass_outside_a_turn_is_flagged_and_ignored(tmp_path, agent_kit, bad):
    clean, clean_rt = _run(tmp_path / "clean", agent_kit, None)
    bent, bent_rt = _run(tmp_path / "bad", agent_kit, bad)
    tick = bent[4]
    assert tick.error is None
    assert [f for f in tick.input_flags if "compass" in f], tick.input_flags
    assert "ignored" in next(f for f in tick.input_flags if "compass" in f)
    assert not any("compass" in f for r in bent[:4] + bent[5:] for f in r.input_flags)
    # ignored: the model got exactly what the valid reading gives (the last valid heading is still east)
    np.testing.assert_allclose(_given(bent_rt, 4), _given(clean_rt, 4), atol=1e-9)
    assert tick.steer == pytest.approx(clean[4].steer, abs=1e-9)


@pytest.mark.parametrize("good", [-2 * math.pi, -math.pi, 0.0, 3.0, 2 * math.pi])
def test_compass_within_a_turn_is_a_heading(tmp_path, agent_kit, good):
    records, _ = _run(tmp_path, agent_kit, good)
    assert not any("compass" in f for r in records for f in r.input_flags)
