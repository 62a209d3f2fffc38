"""`automot drive` (embedded) refuses a bad agent config before OUT exists, and ``--overwrite`` leaves none of the
earlier run's files, ``inputs/`` included (issue 20, cases 6 and 15)."""

from __future__ import annotations

import json

import pytest
import yaml
from doubles.paths import REPO

from automot.cli import main
from automot.fsio import StagedFiles

DEMO_CONFIG = REPO / "leaderboard_configs" / "demo_tiny.yaml"
ROUTE = "highway_lane_keep"


def _demo() -> dict:
    cfg = yaml.safe_load(DEMO_CONFIG.read_text())
    cfg["model"]["checkpoint"] = str(REPO / "checkpoints" / "tiny_demo")
    return cfg


def _with(path: tuple[str, ...], value) -> dict:
    cfg = _demo()
    node = cfg
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return cfg


BAD_CONFIGS = {
    "not yaml": "model: [unclosed\n  runtime: {",
    "not a mapping": "- just\n- a list\n",
    "unknown field": _with(("model", "no_such_field"), 1),
    "wrong type": _with(("history", "buffer_len"), "forty"),
    "out of range": _with(("runtime", "max_snapshot_age_s"), -1.0),
    "unknown rig": _with(("rig",), "no-such-rig"),
    "missing checkpoint": _with(("model", "checkpoint"), "/nonexistent/checkpoint"),
    "not a checkpoint folder": _with(("model", "checkpoint"), str(REPO / "configs")),
    "unknown preset": {**_demo(), "model": {"preset": "gigantic", "checkpoint": None}},
}


@pytest.mark.parametrize("kind", sorted(BAD_CONFIGS))
def test_bad_agent_config_is_refused_before_out_exists(tmp_path, capsys, kind):
    content = BAD_CONFIGS[kind]
    config = tmp_path / "agent.yaml"
    config.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    out = tmp_path / "runs" / "out"
    assert main(["drive", "--route", ROUTE, "--config", str(config), "--out", str(out), "--no-progress"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("automot drive: error: "), err
    assert not (tmp_path / "runs").exists()  # no OUT, so no DS 0 results.json to refuse the corrected re-run


def test_missing_agent_config_is_refused_before_out_exists(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["drive", "--route", ROUTE, "--config", str(tmp_path / "none.yaml"), "--out", str(out)]
    assert main(argv) == 2
    assert "none.yaml" in capsys.readouterr().err and not out.exists()


def test_overwrite_without_record_inputs_removes_the_earlier_inputs(tmp_path, capsys):
    out = tmp_path / "run"
    base = ["drive", "--route", ROUTE, "--out", str(out), "--no-progress", "--ticks"]
    assert main([*base, "34", "--record-inputs"]) == 0
    assert (out / "inputs" / "manifest.json").is_file()
    assert main([*base, "33", "--overwrite"]) == 0
    assert not (out / "inputs").exists()
    ticks = [json.loads(line) for line in (out / "ticks.jsonl").read_text().splitlines()]
    assert len(ticks) == 33
    capsys.readouterr()
    assert main(["replay", str(out), "--out", str(tmp_path / "r")]) == 2  # nothing of the old run to replay
    assert "--record-inputs" in capsys.readouterr().err


def test_staged_commit_replaces_a_folder_as_a_whole(tmp_path):
    out = tmp_path / "out"
    (out / "inputs" / "sub").mkdir(parents=True)
    for name in ("inputs/manifest.json", "inputs/chunk_000000.npz", "inputs/chunk_000001.npz", "inputs/sub/x"):
        (out / name).write_text("old")
    (out / "results.json").write_text("old")
    stage = StagedFiles(out)
    (stage.staging_dir / "inputs").mkdir()
    (stage.staging_dir / "inputs" / "chunk_000000.npz").write_text("new")
    stage.write_text("results.json", "new")
    stage.commit(last=("results.json",), replace=("results.json", "inputs"))
    files = {str(p.relative_to(out)): p.read_text() for p in out.rglob("*") if p.is_file()}
    assert files == {"inputs/chunk_000000.npz": "new", "results.json": "new"}
    stage = StagedFiles(out)
    stage.write_text("results.json", "newer")
    stage.commit(last=("results.json",), replace=("results.json", "inputs"))
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]


def test_set_of_a_wrong_type_names_the_key(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["drive", "--route", ROUTE, "--out", str(out), "--set", "runtime.options.threads_fast=abc"]
    assert main(argv) == 2
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert "threads_fast" in line and "'<' not supported" not in line
    assert not out.exists()
