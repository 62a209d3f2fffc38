"""agent_tick (issue #14 part 2): the schema of the whole-tick benchmark; no timing is asserted."""

from __future__ import annotations

from automot.world.cli import DEFAULT_CONFIG, REPO_ROOT
from automot.world.tick_bench import STAGES, measure_agent_tick, summarize_ticks


def test_summary_fields_from_rows():
    rows = [{**{s: 1.0 for s in STAGES}, "tick": 8.0 + i, "runtime_fast_step_ms": 2.0} for i in range(10)]
    out = summarize_ticks(rows)
    assert set(out) == {"ticks", "p50_ms", "p99_ms", "fast_step_p99_ms", "ratio_p99", "stages"}
    assert set(out["stages"]) == set(STAGES) and all(set(v) == {"p50", "p99"} for v in out["stages"].values())
    assert out["fast_step_p99_ms"] == 2.0 and out["ratio_p99"] == round(out["p99_ms"] / 2.0, 3)
    assert summarize_ticks([])["ratio_p99"] is None


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
