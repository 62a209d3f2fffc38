"""End to end: `automot drive` with the default agent config (the committed demo checkpoint) in the embedded world."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v2 as imageio
import pytest

from automot.cli import main

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_drive_writes_results_video_and_ticks(tmp_path, monkeypatch):
    assert (REPO / "checkpoints" / "tiny_demo" / "model.safetensors").is_file(), "demo checkpoint is committed"
    monkeypatch.delenv("AUTOMOT_RECORD_DIR", raising=False)
    out = tmp_path / "run"
    ticks = 60
    rc = main(
        ["drive", "--world", "embedded", "--route", "highway_lane_keep", "--out", str(out), "--ticks", str(ticks)]
    )
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    record = results["_checkpoint"]["records"][0]
    for key in ("score_route", "score_penalty", "score_composed"):
        assert key in record["scores"] and key in results
    assert results["_checkpoint"]["progress"] == [1, 1]
    lines = (out / "ticks.jsonl").read_text().splitlines()
    assert len(lines) == ticks
    rows = [json.loads(x) for x in lines]
    assert [r["frame"] for r in rows] == list(range(ticks))  # one line per tick, in order, none lost or repeated
    # After the 31 warm-up ticks the trained model runs every tick: a plan is recorded and no safe stop occurs.
    assert all(r["warmup"] for r in rows[:31]) and not any(r["warmup"] for r in rows[31:])
    driving = rows[31:]
    assert all(t.get("safe_stop") in (False, None) for t in driving)
    assert any(t.get("waypoints") for t in driving)
    reader = imageio.get_reader(str(out / "video.mp4"))
    frames = sum(1 for _ in reader)
    assert frames == ticks
