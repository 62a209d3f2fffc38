"""The whole-tick benchmark (world/tick_bench.py, the ``agent_tick`` entry of ``automot bench``): the summary of
hand-made per-tick rows against a hand computation, and one real measurement on the demo model (no timing is
asserted, only that every stage was measured)."""

from __future__ import annotations

import math

from automot.world.cli import DEFAULT_CONFIG, REPO_ROOT
from automot.world.tick_bench import STAGES, measure_agent_tick, summarize_ticks

NAN = math.nan


def _rows() -> list[dict[str, float]]:
    """11 ticks, whole-tick times 10, 20, ..., 110 ms in shuffled order; fast step 2 ms except one 4 ms tick."""
    ticks = [60.0, 10.0, 110.0, 30.0, 90.0, 20.0, 50.0, 100.0, 40.0, 80.0, 70.0]
    rows = []
    for i, tick in enumerate(ticks):
        row = {name: 1.0 for name in STAGES}
        row.update(
            tick=tick,
            runtime_fast_step_ms=4.0 if i == 3 else 2.0,
            sensor_decoding=i / 3.0,  # 0, 1/3, ..., 10/3
            bev_encoder=0.0,  # a model without a BEV encoder
            recorder=NAN,  # never measured (recorder off)
            other=7.0 if i == 5 else NAN,  # measured once
        )
        rows.append(row)
    return rows


def test_summary_fields_from_rows():
    # numpy's linear percentile over n = 11 sorted values: p50 is the value at rank 5, p99 lies at rank 9.9, i.e.
    # v[9] + 0.9 (v[10] - v[9]). NaN entries are left out; a stage never measured is None.
    out = summarize_ticks(_rows())
    assert out["ticks"] == 11
    assert out["p50_ms"] == 60.0
    assert out["p99_ms"] == 109.0  # 100 + 0.9 * 10
    assert out["fast_step_p99_ms"] == 3.8  # 2 + 0.9 * 2
    assert out["ratio_p99"] == 28.684  # 109 / 3.8 = 28.68421..., rounded to 3 decimals
    stages = out["stages"]
    assert list(stages) == list(STAGES)
    assert stages["sensor_decoding"] == {"p50": 1.6667, "p99": 3.3}  # 5/3; 3 + 0.9 * (10/3 - 3) = 3.3
    assert stages["bev_encoder"] == {"p50": 0.0, "p99": 0.0}
    assert stages["recorder"] == {"p50": None, "p99": None}
    assert stages["other"] == {"p50": 7.0, "p99": 7.0}  # the one measured value
    for name in ("preprocessing", "runtime_submit", "fast_step", "control"):
        assert stages[name] == {"p50": 1.0, "p99": 1.0}


def test_summary_of_no_ticks_has_no_numbers():
    out = summarize_ticks([])
    assert out["ticks"] == 0
    assert out["p50_ms"] is out["p99_ms"] is out["fast_step_p99_ms"] is out["ratio_p99"] is None
    assert all(v == {"p50": None, "p99": None} for v in out["stages"].values())


def test_measure_agent_tick_on_the_demo_model(tmp_path):
    sets = ["runtime.mode=async", "runtime.options.max_snapshot_age_ticks=null", "runtime.max_snapshot_age_s=1000"]
    out = measure_agent_tick(str(REPO_ROOT / DEFAULT_CONFIG), sets, ticks=4, recorder=True, workdir=tmp_path)
    assert out["ticks"] == 4 and out["mode"] == "async" and out["recorder"] is True
    assert out["video_frames"] >= 1 and out["video_frames_dropped"] == 0
    assert out["p99_ms"] > 0 and out["fast_step_p99_ms"] > 0 and out["ratio_p99"] > 0
    stages = out["stages"]
    assert stages["fast_step"]["p50"] > 0 and stages["sensor_decoding"]["p50"] > 0 and stages["recorder"]["p50"] > 0
    assert stages["bev_encoder"]["p99"] == 0.0  # the demo model has no BEV encoder
    assert list(tmp_path.iterdir()) == []  # its temporary folder is gone
