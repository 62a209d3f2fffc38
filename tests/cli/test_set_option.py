"""``--set KEY=VALUE`` on train and collect (drive / eval: tests/world/test_drive_pipelined.py,
tests/evaluation/test_ray_orchestration.py): applied to the config the command reads, validated like the file,
refused with one line before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from automot.cli import main
from automot.errors import ExitCode

TINY_TRAIN = Path(__file__).resolve().parents[2] / "configs" / "train" / "tiny_demo.yaml"


def test_train_set_overrides_the_training_config(capsys):
    assert main(["train", "--dry-run", "--config", str(TINY_TRAIN), "--json", "--set", "data.batch_size=3"]) == 0
    assert json.loads(capsys.readouterr().out)["micro_batch"] == 3
    batch = yaml.safe_load(TINY_TRAIN.read_text())["data"]["batch_size"]
    assert batch != 3  # the value came from --set, not from the file
    assert main(["train", "--dry-run", "--config", str(TINY_TRAIN), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["micro_batch"] == batch


def test_train_set_with_an_unknown_key_writes_nothing(tmp_path, capsys):
    argv = ["train", "--config", str(TINY_TRAIN), "--out", str(tmp_path / "run"), "--set", "optim.bogus=1"]
    assert main(argv) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert err.startswith("automot train: error: --set: optim.bogus: unknown field") and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_collect_set_bad_values_write_nothing(tmp_path, capsys):
    base = ["collect", "--routes", "merge", "--out", str(tmp_path / "ds")]
    assert main([*base, "--set", "qa=maybe"]) == ExitCode.USAGE
    assert "qa: expected bool" in capsys.readouterr().err
    assert main([*base, "--set", "out=elsewhere"]) == ExitCode.USAGE  # the output folder is --out's alone
    assert "set it with --out" in capsys.readouterr().err
    assert not (tmp_path / "ds").exists()


def test_collect_set_reaches_the_saved_options(tmp_path, capsys):
    out = tmp_path / "ds"
    argv = ["collect", "--routes", "merge", "--ticks", "5", "--no-progress", "--out", str(out)]
    assert main([*argv, "--set", "qa=false", "--set", "sample_every=5"]) == 0
    saved = yaml.safe_load((out / "collect_config.yaml").read_text())
    assert saved["qa"] is False and saved["sample_every"] == 5 and saved["max_ticks"] == 5
