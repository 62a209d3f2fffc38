"""inspect / replay / view never destroy the run they read, name a corrupt file (exit 2), leave nothing behind when
they refuse, and call a replay a reproduction only when the model files and the effective config are the run's
(issue 20, cases 1, 5, 10, 11, 12, 15, 18)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from doubles.paths import REPO

from automot.cli import main

DEMO_CHECKPOINT = REPO / "checkpoints" / "tiny_demo"
DEMO_CONFIG = REPO / "leaderboard_configs" / "demo_tiny.yaml"
TICKS = 36  # warm-up is 31 ticks with demo_tiny.yaml: 5 driving ticks


@pytest.fixture(scope="module")
def own_model_run(tmp_path_factory) -> Path:
    """A real embedded drive, inputs recorded, of the demo model copied into a folder of its own (so a test can
    change its weights in place afterwards)."""
    base = tmp_path_factory.mktemp("own")
    ckpt = base / "ckpt"
    shutil.copytree(DEMO_CHECKPOINT, ckpt)
    cfg = yaml.safe_load(DEMO_CONFIG.read_text())
    cfg["model"]["checkpoint"] = str(ckpt)
    (base / "agent.yaml").write_text(yaml.safe_dump(cfg))
    out = base / "run"
    argv = ["drive", "--route", "highway_lane_keep", "--config", str(base / "agent.yaml"), "--out", str(out)]
    assert main([*argv, "--ticks", str(TICKS), "--no-progress", "--record-inputs"]) == 0
    return out


def _hand_run(folder: Path) -> Path:
    folder.mkdir(parents=True)
    tick = {"frame": 0, "sim_time": 0.0, "speed": 1.0, "ego": {"x": 0.0, "y": 0.0, "yaw": 0.0}}
    (folder / "ticks.jsonl").write_text(json.dumps(tick) + "\n")
    record = {"status": "Completed", "infractions": {}, "scores": {"score_composed": 50.0}}
    (folder / "results.json").write_text(json.dumps({"_checkpoint": {"records": [record]}}))
    return folder


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_error_line(err: str, command: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"automot {command}: error: "), err
    return lines[0]


def test_view_save_onto_the_runs_own_file_is_refused(tmp_path, capsys):
    run = _hand_run(tmp_path / "run")
    before = _tree(run)
    for target in (run / "results.json", run / "view.rrd", run):
        assert main(["view", str(run), "--save", str(target)]) == 2
        line = _one_error_line(capsys.readouterr().err, "view")
        assert "--save" in line and str(run) in line
    assert _tree(run) == before  # nothing replaced, nothing added


def test_view_save_unwritable_or_a_folder_is_exit_2_before_reading(tmp_path, capsys):
    run = _hand_run(tmp_path / "run")
    (tmp_path / "adir").mkdir()
    assert main(["view", str(run), "--save", str(tmp_path / "adir")]) == 2
    assert "is a folder" in _one_error_line(capsys.readouterr().err, "view")
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert main(["view", str(run), "--save", str(ro / "x.rrd")]) == 2
        assert "cannot write there" in _one_error_line(capsys.readouterr().err, "view")
    finally:
        ro.chmod(0o755)


@pytest.mark.parametrize("command", ["inspect", "replay", "view"])
def test_binary_results_json_is_exit_2_naming_it(tmp_path, capsys, command):
    run = _hand_run(tmp_path / "run")
    (run / "results.json").write_bytes(bytes(range(256)) * 8)
    extra = {"inspect": [], "replay": ["--out", str(tmp_path / "o")], "view": ["--save", str(tmp_path / "v.rrd")]}
    assert main([command, str(run), *extra[command]]) == 2
    line = _one_error_line(capsys.readouterr().err, command)
    assert str(run / "results.json") in line
    assert not (tmp_path / "o").exists() and not (tmp_path / "v.rrd").exists()


def test_inspect_eval_folder_lists_an_unreadable_route(tmp_path, capsys):
    _hand_run(tmp_path / "eval" / "routes" / "1")
    bad = _hand_run(tmp_path / "eval" / "routes" / "2")
    (bad / "results.json").write_text('{"_checkpoint": {"records": [')
    (tmp_path / "eval" / "routes" / "3").mkdir()  # not started: not a route yet
    assert main(["inspect", str(tmp_path / "eval"), "--json"]) == 0
    routes = {r["route"]: r for r in json.loads(capsys.readouterr().out)["routes"]}
    assert sorted(routes) == ["1", "2"]
    assert routes["1"]["status"] == "Completed" and routes["1"]["problem"] is None
    assert routes["2"]["status"].startswith("unreadable") and str(bad / "results.json") in routes["2"]["problem"]


def test_replay_refusal_leaves_no_out_folder(tmp_path, capsys):
    run = _hand_run(tmp_path / "run")  # no inputs/
    out = tmp_path / "deep" / "er" / "out"
    assert main(["replay", str(run), "--out", str(out)]) == 2
    assert "--record-inputs" in _one_error_line(capsys.readouterr().err, "replay")
    assert not (tmp_path / "deep").exists()


def test_replay_out_inside_the_checkpoint_is_refused(own_model_run, tmp_path, capsys):
    ckpt = own_model_run.parent / "ckpt"
    before = _tree(ckpt)
    assert main(["replay", str(own_model_run), "--checkpoint", str(ckpt), "--out", str(ckpt / "r")]) == 2
    assert "inside the source" in _one_error_line(capsys.readouterr().err, "replay")
    assert _tree(ckpt) == before


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_replay_without_cuda_is_exit_3(own_model_run, tmp_path, capsys):
    assert main(["replay", str(own_model_run), "--device", "cuda", "--out", str(tmp_path / "r")]) == 3
    assert "CUDA" in _one_error_line(capsys.readouterr().err, "replay")
    assert not (tmp_path / "r").exists()


def test_replay_corrupt_manifest_and_truncated_chunk_are_exit_2_naming_the_file(own_model_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(own_model_run, run)
    manifest = run / "inputs" / "manifest.json"
    good = manifest.read_bytes()
    for garbage in (b"\x00\xff garbage", b'{"format": "automot-inputs", "chunks": 7}', b"[1, 2]"):
        manifest.write_bytes(garbage)
        assert main(["replay", str(run), "--out", str(tmp_path / "r")]) == 2
        assert str(manifest) in _one_error_line(capsys.readouterr().err, "replay")
        assert not (tmp_path / "r").exists()
    manifest.write_bytes(good)
    chunk = sorted((run / "inputs").glob("chunk_*.npz"))[0]
    chunk.write_bytes(chunk.read_bytes()[: chunk.stat().st_size // 2])
    assert main(["replay", str(run), "--out", str(tmp_path / "r")]) == 2
    assert str(chunk) in _one_error_line(capsys.readouterr().err, "replay")


def test_replay_after_weights_changed_in_place_is_a_comparison(own_model_run, tmp_path, capsys):
    assert main(["replay", str(own_model_run), "--out", str(tmp_path / "same"), "--mode", "sync"]) == 0
    same = json.loads((tmp_path / "same" / "replay.json").read_text())
    assert same["same_model"] and not same["comparison"] and same["config_differences"] == []
    assert "reproduction" in capsys.readouterr().out
    run = tmp_path / "run"
    shutil.copytree(own_model_run.parent, tmp_path / "copy")
    run = tmp_path / "copy" / "run"
    # the manifest names the original checkpoint folder: point a copy of the run at a copy of the weights
    manifest = run / "inputs" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["config"]["model"]["checkpoint"] = str(tmp_path / "copy" / "ckpt")
    manifest.write_text(json.dumps(data))
    weights = tmp_path / "copy" / "ckpt" / "model.safetensors"
    from safetensors.numpy import load_file, save_file

    tensors = load_file(weights)
    name = next(k for k, v in tensors.items() if v.dtype.kind == "f" and v.size > 16)
    tensors[name] = tensors[name] * 1.5
    save_file(tensors, weights)
    assert main(["replay", str(run), "--out", str(tmp_path / "changed"), "--mode", "sync"]) == 0
    report = json.loads((tmp_path / "changed" / "replay.json").read_text())
    assert report["comparison"] and not report["same_model"]
    assert report["changed_model_files"] == ["model.safetensors"]
    out = capsys.readouterr().out
    assert "comparison" in out and "reproduction" not in out


def test_replay_with_another_effective_config_is_a_comparison(own_model_run, tmp_path, capsys):
    cfg = yaml.safe_load((own_model_run.parent / "agent.yaml").read_text())
    cfg["runtime"]["max_snapshot_age_s"] = 0.5
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(cfg))
    assert (
        main(["replay", str(own_model_run), "--config", str(tmp_path / "other.yaml"), "--out", str(tmp_path / "c")])
        == 0
    )
    report = json.loads((tmp_path / "c" / "replay.json").read_text())
    assert report["same_model"] and report["comparison"]
    assert report["config_differences"] == ["runtime.max_snapshot_age_s"]


def test_replay_checkpoint_with_other_input_shapes_is_refused(own_model_run, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(DEMO_CHECKPOINT, other)
    cfg = yaml.safe_load((other / "config.yaml").read_text())
    cfg["prompt"]["num_frames"] = 3  # the run recorded 2 frames per prompt (history offsets [5, 0])
    (other / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["replay", str(own_model_run), "--checkpoint", str(other), "--out", str(tmp_path / "r")]) == 2
    line = _one_error_line(capsys.readouterr().err, "replay")
    assert "3 frames per prompt, the run recorded 2" in line
    assert not (tmp_path / "r").exists()
