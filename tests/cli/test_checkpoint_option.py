"""``--checkpoint DIR`` is a model folder in every command, and `drive` really drives with it (issue 19: it was the
CARLA results file there, silently ignored in the embedded world while the demo model drove)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from automot.cli import main
from automot.errors import ExitCode

DEMO = Path(__file__).resolve().parents[2] / "checkpoints" / "tiny_demo"


@pytest.fixture
def model_copy(tmp_path) -> Path:
    """A copy of the demo model folder somewhere else (so it can be told apart from the default config's)."""
    folder = tmp_path / "my_model"
    shutil.copytree(DEMO, folder)
    return folder


def drive(tmp_path, *extra: str) -> list[str]:
    argv = ["drive", "--route", "highway_lane_keep", "--ticks", "3", "--no-progress", "--out", str(tmp_path / "out")]
    return [*argv, *extra]


def test_drive_uses_the_checkpoint_folder(tmp_path, model_copy, capsys, monkeypatch):
    monkeypatch.setenv("AUTOMOT_RECORD_DIR", str(tmp_path))  # drive sets it; restored afterwards
    assert main(drive(tmp_path, "--checkpoint", str(model_copy))) == 0
    used = yaml.safe_load((tmp_path / "out" / "agent_config.yaml").read_text())
    assert Path(used["model"]["checkpoint"]) == model_copy.resolve()


def test_drive_loads_the_checkpoint_folder_it_is_given(tmp_path, model_copy, capsys, monkeypatch):
    # Weights that cannot be read: if the demo model still drove, this run would finish with exit 0.
    monkeypatch.setenv("AUTOMOT_RECORD_DIR", str(tmp_path))
    (model_copy / "model.safetensors").write_bytes(b"not a safetensors file")
    code = main(drive(tmp_path, "--checkpoint", str(model_copy)))
    err = capsys.readouterr().err
    assert code in (ExitCode.USAGE, ExitCode.RUN_FAILED), err
    assert "my_model" in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("case", ["missing", "not_a_model", "expert"])
def test_drive_refuses_a_checkpoint_it_cannot_use(tmp_path, capsys, case):
    (tmp_path / "empty").mkdir()
    extra = {
        "missing": ["--checkpoint", str(tmp_path / "nope")],
        "not_a_model": ["--checkpoint", str(tmp_path / "empty")],
        "expert": ["--checkpoint", str(DEMO), "--agent", "expert"],
    }[case]
    assert main(drive(tmp_path, *extra)) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert err.startswith("automot drive: error: --checkpoint") and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_eval_refuses_a_checkpoint_that_is_not_a_model_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    argv = ["eval", "--routes", "merge", "--out", str(tmp_path / "out"), "--checkpoint", str(tmp_path / "empty")]
    assert main(argv) == ExitCode.USAGE
    assert "not a model folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
