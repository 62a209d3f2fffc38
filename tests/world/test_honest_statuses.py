"""Honest route statuses and reproducible routes (issue 22, item 4): a --ticks cap is "Stopped - tick limit", the
record holds the automot drive line that drives the route again, and eval passes --record-inputs on."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from automot.cli import build_parser, main


def _record(folder: Path) -> dict:
    return json.loads((folder / "results.json").read_text())["_checkpoint"]["records"][0]


def test_capped_route_is_stopped_and_its_command_reproduces_it(tmp_path, capsys):
    first = tmp_path / "first"
    argv = ["drive", "--world", "embedded", "--route", "merge", "--agent", "expert", "--seed", "3", "--ticks", "30"]
    assert main([*argv, "--out", str(first), "--no-progress"]) == 0
    rec = _record(first)
    assert rec["status"] == "Stopped - tick limit" and rec["infractions"]["route_timeout"] == []
    command = rec["meta"]["command"]
    assert command == "automot drive --world embedded --route merge --seed 3 --ticks 30 --agent expert"
    again = tmp_path / "again"
    parts = shlex.split(command)
    assert parts[:2] == ["automot", "drive"]
    assert main([*parts[1:], "--out", str(again), "--no-progress"]) == 0
    capsys.readouterr()
    second = _record(again)
    assert second["scores"] == rec["scores"] and second["status"] == rec["status"]
    assert second["meta"]["duration_game"] == rec["meta"]["duration_game"] == 1.5  # 30 ticks of 0.05 s


def test_command_points_at_the_runs_resolved_agent_config(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["drive", "--route", "highway_lane_keep", "--ticks", "2", "--set", "runtime.refresh_every=3",
                 "--out", str(out), "--no-progress"]) == 0  # fmt: skip
    capsys.readouterr()
    parts = shlex.split(_record(out)["meta"]["command"])
    config = Path(parts[parts.index("--config") + 1])
    assert config == (out / "agent_config.yaml").resolve() and config.is_file()
    assert "refresh_every: 3" in config.read_text()  # the --set override is in the file the command names
    assert parts[parts.index("--ticks") + 1] == "2" and "--seed" in parts


def test_eval_record_inputs_reaches_every_route(tmp_path, monkeypatch):
    from automot.evaluation.cli import build_config

    monkeypatch.delenv("AUTOMOT_RECORD_INPUTS", raising=False)

    parser = build_parser()
    args = parser.parse_args(
        ["eval", "--world", "embedded", "--routes", "merge", "--out", str(tmp_path / "e"), "--record-inputs"]
    )
    cfg = build_config(args, tmp_path / "e")
    assert cfg.env.get("AUTOMOT_RECORD_INPUTS") == "1"
    args = parser.parse_args(["eval", "--world", "embedded", "--routes", "merge", "--out", str(tmp_path / "e")])
    assert "AUTOMOT_RECORD_INPUTS" not in build_config(args, tmp_path / "e").env


def test_drive_prints_min_speed_readings_as_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["drive", "--route", "merge", "--agent", "expert", "--ticks", "200", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    readings = _record(out)["infractions"]["min_speed_infractions"]
    pcts = [float(r.split("is ")[1].split("%")[0]) for r in readings]
    assert len(readings) >= 2 and "min_speed_infractions:" not in text
    line = f"  min speed: {len(pcts)} readings, mean {sum(pcts) / len(pcts):.2f} %, {sum(p < 100 for p in pcts)} below"
    assert line in text
