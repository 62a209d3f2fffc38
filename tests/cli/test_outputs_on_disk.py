"""Issue #12: nothing on disk is lost, and every bad input ends as ONE clear line with its documented exit code.

Each CLI case runs the real `automot` entry point (``automot.cli.main`` in-process, or a subprocess for SIGKILL),
asserts the exit code, exactly one ``automot <cmd>: error:`` stderr line without a traceback, and that the hashes
of every file under the folders involved are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from automot import clikit
from automot.cli import main
from automot.errors import ExitCode, UsageError
from automot.fsio import (
    StagedFiles,
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    check_output_not_inside,
    is_temp_name,
)

REPO = Path(__file__).resolve().parents[2]


# --- helpers --------------------------------------------------------------------------------------------------


def tree_hashes(*roots: Path) -> dict[str, str]:
    """sha256 of every file under ``roots`` (hidden ones included), keyed by path."""
    out = {}
    for root in roots:
        root = Path(root)
        if root.is_file():
            out[str(root)] = hashlib.sha256(root.read_bytes()).hexdigest()
            continue
        for p in sorted(root.rglob("*")) if root.exists() else []:
            if p.is_file():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def leftovers(root: Path) -> list[str]:
    """Names under ``root`` that look temporary (there must be none after a clean exit or an error)."""
    return [str(p) for p in Path(root).rglob("*") if is_temp_name(p.name)]


def run_error(argv: list[str], capsys, command: str, code: ExitCode) -> str:
    """Run ``automot argv``; assert exit ``code`` and exactly one error line; return that line."""
    got = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one stderr line, got {lines}"
    assert lines[0].startswith(f"automot {command}: error: "), lines[0]
    assert got == int(code), (got, lines[0])
    return lines[0]


# --- automot.fsio ---------------------------------------------------------------------------------------------


def test_atomic_writers_replace_whole_files(tmp_path):
    target = tmp_path / "sub" / "a.json"
    atomic_write_json(target, {"x": 1})
    assert json.loads(target.read_text()) == {"x": 1}
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    atomic_write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.json"]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("exc", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_atomic_path_failure_mid_write_keeps_the_old_file(tmp_path, exc):
    target = tmp_path / "weights.bin"
    target.write_bytes(b"good old weights")
    with pytest.raises(type(exc)), atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and is_temp_name(tmp.name)
        tmp.write_bytes(b"half of the new")
        raise exc
    assert target.read_bytes() == b"good old weights"
    assert [p.name for p in tmp_path.iterdir()] == ["weights.bin"]


def test_atomic_path_with_a_path_writer(tmp_path):
    target = tmp_path / "state.pt"
    with atomic_path(target) as tmp:
        torch.save({"a": torch.ones(2)}, tmp)
    assert torch.equal(torch.load(target, weights_only=True)["a"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]


def test_staged_files_all_or_nothing(tmp_path):
    (tmp_path / "a.txt").write_text("old a")
    (tmp_path / "b.txt").write_text("old b")
    with pytest.raises(RuntimeError), StagedFiles(tmp_path) as stage:
        stage.write_text("a.txt", "new a")
        stage.path("b.txt").write_text("new b")
        raise RuntimeError("the second half failed")
    assert (tmp_path / "a.txt").read_text() == "old a" and (tmp_path / "b.txt").read_text() == "old b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]
    with StagedFiles(tmp_path) as stage:
        stage.write_text("a.txt", "new a")
        stage.write_json("c.json", [1])
        # Nothing is visible under a final name before the block ends.
        assert (tmp_path / "a.txt").read_text() == "old a" and not (tmp_path / "c.json").exists()
    assert (tmp_path / "a.txt").read_text() == "new a" and json.loads((tmp_path / "c.json").read_text()) == [1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt", "c.json"]
    with pytest.raises(ValueError):
        StagedFiles(tmp_path).path("../escape")


def test_check_output_not_inside(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (tmp_path / "link").symlink_to(src)
    for out in (src, src / "out", src / "a" / "b", tmp_path / "link", tmp_path / "link" / "x", Path(f"{src}/../src")):
        with pytest.raises(UsageError, match="source"):
            check_output_not_inside(src, out)
    check_output_not_inside(src, tmp_path / "src2")  # a sibling whose name starts the same is fine
    check_output_not_inside(src, tmp_path)


def test_prepare_out(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="is a file"):
        clikit.prepare_out(tmp_path / "file")
    with pytest.raises(UsageError, match="cannot write"):
        clikit.prepare_out(tmp_path / "file" / "sub")
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep").write_text("keep")
    with pytest.raises(UsageError, match="--overwrite"):
        clikit.prepare_out(full)
    assert clikit.prepare_out(full, overwrite=True) == full and (full / "keep").read_text() == "keep"
    assert clikit.prepare_out(full, accept_existing=lambda p: (p / "keep").is_file()) == full
    (tmp_path / "left").mkdir()
    (tmp_path / "left" / ".x.abc.tmp").write_text("")  # a killed run's temporary does not make a folder non-empty
    clikit.prepare_out(tmp_path / "left")
    assert not clikit.prepare_out(tmp_path / "later", create=False).exists()
    with pytest.raises(UsageError, match="cannot write"):
        clikit.prepare_out(tmp_path / "file" / "sub", create=False)
    assert clikit.prepare_out(tmp_path / "new" / "deep").is_dir()
    with pytest.raises(UsageError, match="inside the source"):
        clikit.prepare_out(full / "o", source=[tmp_path / "other", full])
    assert not (full / "o").exists()


def test_dataset_overwrite_only_deletes_datasets(tmp_path):
    from automot.training.data.automot_format import DatasetWriter
    from automot.training.data.schema import CameraInfo, DatasetError, DatasetMeta

    meta = DatasetMeta("r", {"C": CameraInfo(4, 2, 90.0, CameraInfo.pinhole(4, 2, 90.0), {})}, 20.0, "jpg")
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    with pytest.raises(DatasetError, match="not a dataset root"):
        DatasetWriter(home, meta, overwrite=True)
    assert (home / "thesis.tex").read_text() == "years of work"


# --- convert --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """A tiny released-format checkpoint folder and the model YAML to check it against (``--preset``)."""
    from automot.model.released.synthetic import build_tiny_released, tiny_released_config, write_released_folder

    root = tmp_path_factory.mktemp("released")
    folder = write_released_folder(*build_tiny_released(seed=3), root / "ckpt")
    preset = root / "tiny_released.yaml"
    tiny_released_config().save_yaml(preset)
    return folder, preset


def convert_argv(released, out, *extra) -> list[str]:
    folder, preset = released
    return ["convert", "--from-automot", str(folder), "--out", str(out), "--preset", str(preset), *extra]


@pytest.mark.parametrize("where", ["same", "inside"])
def test_convert_out_is_or_is_inside_the_source(released, capsys, where):
    folder, preset = released
    out = folder if where == "same" else folder / "converted"
    before = tree_hashes(folder)
    line = run_error(convert_argv(released, out), capsys, "convert", ExitCode.USAGE)
    assert "source" in line
    assert tree_hashes(folder) == before and not (folder / "converted").exists()


def test_convert_out_is_a_file_or_non_empty(released, tmp_path, capsys):
    folder, _ = released
    afile = tmp_path / "out.bin"
    afile.write_bytes(b"not a folder")
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("mine")
    before = tree_hashes(folder, tmp_path)
    assert "is a file" in run_error(convert_argv(released, afile), capsys, "convert", ExitCode.USAGE)
    assert "--overwrite" in run_error(convert_argv(released, full), capsys, "convert", ExitCode.USAGE)
    assert tree_hashes(folder, tmp_path) == before


def test_convert_overwrite_replaces_every_file(released, tmp_path, capsys):
    from safetensors.torch import load_file

    out = tmp_path / "out"
    assert main(convert_argv(released, out)) == 0
    first = tree_hashes(out)
    assert main(convert_argv(released, out, "--dtype", "fp32", "--overwrite")) == 0
    assert load_file(str(out / "model.safetensors"))["action_norm.weight"].dtype == torch.float32
    assert tree_hashes(out)[str(out / "model.safetensors")] != first[str(out / "model.safetensors")]
    assert leftovers(out) == [] and set(tree_hashes(out)) == set(first)
    capsys.readouterr()


@pytest.mark.parametrize("when", ["before_rename", "while_writing"])
def test_sigkill_during_convert_keeps_the_earlier_output(released, tmp_path, when):
    """A convert killed while replacing an earlier good output leaves that output byte-identical and loadable."""
    from automot.model.released.loader import load_converted

    out = tmp_path / "out"
    assert main(convert_argv(released, out)) == 0  # the earlier good output (bf16)
    before = tree_hashes(out)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if when == "before_rename":
        env["AUTOMOT_TEST_SLOW_COMMIT"] = "60"  # test-only hook: every file staged, sleep before the renames
    proc = subprocess.Popen(
        [sys.executable, "-m", "automot.cli", *convert_argv(released, out, "--dtype", "fp32", "--overwrite")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 240
        killed = False
        while time.monotonic() < deadline and proc.poll() is None:
            staged = [p for p in out.iterdir() if is_temp_name(p.name) and p.is_dir()]
            names = {f.name for d in staged for f in d.iterdir()} if staged else set()
            ready = "released_conversion.json" in names if when == "before_rename" else bool(staged)
            if ready:
                proc.send_signal(signal.SIGKILL)
                killed = True
                break
            time.sleep(0.005)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if not killed:
        pytest.skip(f"the conversion finished before it could be killed (rc {proc.returncode})")
    assert proc.returncode == -signal.SIGKILL
    after = {k: v for k, v in tree_hashes(out).items() if not any(is_temp_name(p) for p in Path(k).parts)}
    assert after == before  # every output file is the earlier conversion's, byte for byte
    # What the killed run left is hidden and named *.tmp: never mistaken for an output ...
    assert all(is_temp_name(p.name) for p in out.iterdir() if p.name not in {Path(k).name for k in before})
    model = load_converted(out)  # ... and the earlier output still loads
    assert model.action_norm.weight.dtype == torch.bfloat16


# --- model loading: bad weights, bad config.yaml --------------------------------------------------------------


@pytest.fixture()
def checkpoint(tmp_path, tiny_model):
    from automot.model import save_pretrained

    return save_pretrained(tiny_model, tmp_path / "ckpt")


@pytest.mark.parametrize("damage", ["truncated", "not_safetensors", "empty"])
def test_bad_weights_file_is_one_line(checkpoint, tmp_path, capsys, damage):
    from automot.model import load_pretrained
    from automot.model.understanding import PretrainedLoadError

    weights = checkpoint / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(
        {"truncated": data[: len(data) // 2], "not_safetensors": b"<html>404</html>", "empty": b""}[damage]
    )
    with pytest.raises(PretrainedLoadError, match="model.safetensors"):
        load_pretrained(checkpoint)
    before = tree_hashes(checkpoint)
    out = tmp_path / "exported"
    line = run_error(["export", "--checkpoint", str(checkpoint), "--out", str(out)], capsys, "export", ExitCode.USAGE)
    assert str(weights) in line and "safetensors" in line
    assert tree_hashes(checkpoint) == before and tree_hashes(out) == {}


def test_invalid_yaml_config_is_one_line_naming_file_and_line(checkpoint, tmp_path, capsys):
    from automot.config import ConfigError
    from automot.model import load_pretrained

    (checkpoint / "config.yaml").write_text("name: tiny\nlayers: [1, 2\nhidden: 3\n")
    with pytest.raises(ConfigError, match=r"config\.yaml: not valid YAML at line 3"):
        load_pretrained(checkpoint)
    before = tree_hashes(checkpoint)
    line = run_error(
        ["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o")], capsys, "export", ExitCode.USAGE
    )
    assert "config.yaml" in line and "line 3" in line
    assert tree_hashes(checkpoint) == before


# --- export ---------------------------------------------------------------------------------------------------


def test_export_bad_out(checkpoint, tmp_path, capsys):
    afile = tmp_path / "parity.json"
    afile.write_text("{}")
    full = tmp_path / "full"
    full.mkdir()
    (full / "fast_step.onnx").write_bytes(b"an earlier export")
    before = tree_hashes(tmp_path)
    base = ["export", "--checkpoint", str(checkpoint), "--out"]
    assert "is a file" in run_error([*base, str(afile)], capsys, "export", ExitCode.USAGE)
    assert "cannot write" in run_error([*base, str(afile / "sub")], capsys, "export", ExitCode.USAGE)
    assert "--overwrite" in run_error([*base, str(full)], capsys, "export", ExitCode.USAGE)
    assert "source" in run_error([*base, str(checkpoint / "onnx")], capsys, "export", ExitCode.USAGE)
    assert tree_hashes(tmp_path) == before and leftovers(tmp_path) == []


def test_export_overwrite_replaces_the_earlier_export(checkpoint, tmp_path, capsys):
    out = tmp_path / "full"
    out.mkdir()
    (out / "fast_step.onnx").write_bytes(b"an earlier export")
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(out), "--overwrite"]) == 0
    assert (out / "fast_step.onnx").read_bytes() != b"an earlier export"
    assert json.loads((out / "parity.json").read_text())["passed"] is True
    assert leftovers(out) == []
    capsys.readouterr()


# --- train ----------------------------------------------------------------------------------------------------


def _train_yaml(tmp_path: Path, data: list[str], out: Path) -> Path:
    cfg = tmp_path / "train.yaml"
    cfg.write_text(
        json.dumps(
            {
                "output_dir": str(out),
                "data": {"train": data, "batch_size": 2},
                "stages": [{"name": "action", "epochs": 1}],
                "log": {"progress": False, "tensorboard": False},
            }
        )
    )
    return cfg


def test_train_missing_or_empty_dataset(tmp_path, capsys):
    from automot.training.data.automot_format import META

    empty = tmp_path / "empty"
    empty.mkdir()
    no_episodes = tmp_path / "no_episodes"
    no_episodes.mkdir()
    (no_episodes / META).write_text(
        json.dumps({"format": "automot", "version": 1, "rig": "r", "frame_rate_hz": 20.0, "cameras": {}})
    )
    before = tree_hashes(tmp_path)
    for data, expect in (
        (tmp_path / "missing", "not found"),
        (empty, "meta.json"),
        (no_episodes, str(no_episodes)),
    ):
        cfg = _train_yaml(tmp_path, [str(data)], tmp_path / "run")
        before = tree_hashes(tmp_path)
        line = run_error(["train", "--config", str(cfg)], capsys, "train", ExitCode.USAGE)
        assert expect in line, line
        assert tree_hashes(tmp_path) == before and not (tmp_path / "run").exists()


def test_train_output_dir_rules(tmp_path, capsys):
    from automot.training.synthetic import write_synthetic_dataset

    data = write_synthetic_dataset(tmp_path / "data", episodes=2, seed=0)
    run = tmp_path / "run"
    run.mkdir()
    (run / "val_metrics.json").write_text("[]")
    before = tree_hashes(data, run)
    cfg = _train_yaml(tmp_path, [str(data)], run)
    assert "--overwrite" in run_error(["train", "--config", str(cfg)], capsys, "train", ExitCode.USAGE)
    cfg = _train_yaml(tmp_path, [str(data)], data / "run")
    assert "source" in run_error(["train", "--config", str(cfg)], capsys, "train", ExitCode.USAGE)
    assert tree_hashes(data, run) == before and not (data / "run").exists()


# --- collect --------------------------------------------------------------------------------------------------


def test_collect_bad_out(tmp_path, capsys):
    afile = tmp_path / "dataset"
    afile.write_text("a file")
    other = tmp_path / "other"
    other.mkdir()
    (other / "thesis.tex").write_text("years of work")
    before = tree_hashes(tmp_path)
    base = ["collect", "--routes", "merge", "--ticks", "5", "--no-progress", "--out"]
    assert "is a file" in run_error([*base, str(afile)], capsys, "collect", ExitCode.USAGE)
    assert "--overwrite" in run_error([*base, str(other)], capsys, "collect", ExitCode.USAGE)
    assert "not a dataset root" in run_error([*base, str(other), "--overwrite"], capsys, "collect", ExitCode.USAGE)
    assert tree_hashes(tmp_path) == before


CRASHING_AGENT = """
from automot.world.expert_agent import ExpertAgent


def get_entry_point():
    return "Crasher"


class Crasher(ExpertAgent):
    def setup(self, path_to_conf_file):
        raise RuntimeError("sensor rig exploded")
"""


def test_collect_where_every_episode_crashed_exits_5_with_the_summary(tmp_path, capsys, monkeypatch):
    import automot.training.collect as collect_mod

    agent = tmp_path / "crashing_agent.py"
    agent.write_text(CRASHING_AGENT)
    monkeypatch.setattr(collect_mod, "AGENT_FILE", str(agent))
    out = tmp_path / "ds"
    argv = ["collect", "--routes", "merge", "--episodes", "2", "--ticks", "5", "--no-progress", "--out", str(out)]
    line = run_error(argv, capsys, "collect", ExitCode.RUN_FAILED)
    assert "every episode crashed (2)" in line and "sensor rig exploded" in line
    summary = json.loads((out / "collect_summary.json").read_text())
    assert len(summary["episodes"]) == 2 and all("sensor rig exploded" in r["error"] for r in summary["episodes"])
    assert summary["total_samples"] == 0 and leftovers(out) == []


def test_collect_never_touches_an_existing_episode(tmp_path, capsys):
    from automot.training.collect import CollectOptions, collect

    out = tmp_path / "ds"
    collect(CollectOptions(routes=["merge"], out=str(out), image_size=(32, 16), max_ticks=80, progress=False))
    before = tree_hashes(out)
    argv = ["collect", "--routes", "merge", "--image-size", "32x16", "--ticks", "80", "--no-progress"]
    line = run_error([*argv, "--out", str(out)], capsys, "collect", ExitCode.USAGE)
    assert "already holds episode" in line and "--seed" in line
    assert tree_hashes(out) == before
    # Another seed adds an episode to the same dataset, leaving the first one as it was.
    assert main([*argv, "--out", str(out), "--seed", "7"]) == 0
    after = tree_hashes(out)
    assert {k: after[k] for k in before if "collect_" not in k} == {
        k: v for k, v in before.items() if "collect_" not in k
    }
    assert len(json.loads((out / "collect_summary.json").read_text())["episodes"]) == 2
    capsys.readouterr()
