"""Closed loop with the pipelined runtime (issue #14): ticks.jsonl control outputs do not depend on how slow the slow
path is (within its deadline), K=0 / refresh_every=2 reproduces sync, and `automot drive --set` validates overrides."""

from __future__ import annotations

import json
import time

import pytest

from automot.agent.config import load_agent_config
from automot.agent.runtime_factory import load_model, resolve_device
from automot.cli import main
from automot.world.cli import DEFAULT_AGENT, DEFAULT_CONFIG, REPO_ROOT, overridden_agent_config
from automot.world.runner import run_route

TICKS = 44  # 31 warm-up ticks + 13 driving ticks


def _ticks(folder):
    rows = [json.loads(line) for line in (folder / "ticks.jsonl").read_text().splitlines()]
    # snapshot.refresh_ms is a wall-clock measurement, not an output: compare which snapshot was used, and its age
    snap = [{k: v for k, v in r["snapshot"].items() if k != "refresh_ms"} for r in rows]
    return [(r["frame"], r["control"], r["path"], r["waypoints"], s, r["safe_stop_kind"]) for r, s in zip(rows, snap)]


def _drive(tmp_path, monkeypatch, name: str, sets: list[str], delay: float = 0.0):
    config = overridden_agent_config(str(REPO_ROOT / DEFAULT_CONFIG), sets, tmp_path)
    cfg = load_agent_config(config)
    model = load_model(cfg.model, resolve_device(cfg.model.device), cache=True)  # the agent takes it from the cache
    real = model.prefill

    def slow(obs, capacity=None):
        time.sleep(delay)
        return real(obs, capacity=capacity)

    monkeypatch.setattr(model, "prefill", slow)
    out = tmp_path / name
    monkeypatch.setenv("AUTOMOT_RECORD_DIR", str(out))
    try:
        run_route("intersection", str(REPO_ROOT / DEFAULT_AGENT), config, out, ticks=TICKS, progress=False)
    finally:
        monkeypatch.setattr(model, "prefill", real)
    summary = json.loads((out / "summary.jsonl").read_text().splitlines()[0])
    return _ticks(out), summary["runtime_stats"]


def test_pipelined_ticks_do_not_depend_on_slow_path_speed(tmp_path, monkeypatch):
    sets = ["runtime.mode=pipelined", "runtime.latency_ticks=2", "runtime.refresh_every=2"]
    fast, stats_fast = _drive(tmp_path, monkeypatch, "fast", sets)
    slow, stats_slow = _drive(tmp_path, monkeypatch, "slow", sets, delay=0.08)  # > one tick of wall time (50 ms)
    assert fast == slow
    for stats in (stats_fast, stats_slow):
        assert stats["mode"] == "pipelined" and stats["pipeline"]["deadline_misses"] == 0
    assert stats_slow["pipeline"]["waits"] >= 1 and stats_slow["pipeline"]["wait_ms_total"] > 0
    driving = [t for t in fast if t[0] > 33]  # the first driving tick is 32: published from 34 on
    assert driving and all(t[4]["age_ticks"] in (2, 3) for t in driving)


def test_demo_config_k0_reproduces_sync(tmp_path, monkeypatch):
    assert load_agent_config(REPO_ROOT / DEFAULT_CONFIG).runtime.mode == "pipelined"
    piped, _ = _drive(tmp_path, monkeypatch, "piped", [])
    synced, stats = _drive(tmp_path, monkeypatch, "synced", ["runtime.mode=sync"])
    assert stats["mode"] == "sync" and piped == synced


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("runtime.mode=fast", "runtime.mode: expected one of"),
        ("runtime.latency_ticks=-1", "runtime.latency_ticks: must be >= 0"),
        ("runtime.latency_ticks=x", "runtime.latency_ticks: expected int"),
        ("runtime.nope=1", "runtime.nope: unknown field"),
        ("rig.x=1", "--set rig.x: rig is"),
        ("runtime.latency_ticks", "expected KEY=VALUE"),
        ("runtime.latency_ticks=[1", "not valid YAML"),
        ("runtime.latency_ticks=30", "max_snapshot_age_ticks"),
    ],
)
def test_drive_set_errors_are_one_line_naming_the_key(tmp_path, capsys, item, message):
    code = main(["drive", "--route", "intersection", "--ticks", "2", "--out", str(tmp_path / "o"), "--set", item])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()  # refused before anything ran


def test_set_values_are_parsed_as_yaml_and_written(tmp_path):
    path = overridden_agent_config(
        str(REPO_ROOT / DEFAULT_CONFIG),
        ["runtime.latency_ticks=3", "runtime.refresh_timeout_s=null", "image_size=[128, 64]", "recorder.video=false"],
        tmp_path,
    )
    cfg = load_agent_config(path)
    assert cfg.runtime.latency_ticks == 3 and cfg.runtime.refresh_timeout_s is None
    assert cfg.image_size == (128, 64) and cfg.recorder.video is False
    assert cfg.model.checkpoint and (REPO_ROOT / "checkpoints" / "tiny_demo").samefile(cfg.model.checkpoint)
