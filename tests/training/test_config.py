"""Training config: YAML loading, errors that name the field, the shipped configs, CLI registration."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from automot.errors import ConfigError
from automot.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[2]
BASE = {"data": {"train": ["some/dir"]}}


def _load(tmp_path: Path, data: dict) -> TrainConfig:
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(data))
    return TrainConfig.load_yaml(path)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {**BASE, "stages": [{"name": "action"}, {"name": "joint", "lora": {"rank": "8"}}]},
            r"stages\[1\]\.lora\.rank: expected int, got '8' \(str\)",
        ),
        ({**BASE, "optim": {"lr": "fast"}}, r"optim\.lr: expected a number, got 'fast' \(str\)"),
        ({**BASE, "optim": {"warmup": 3}}, r"optim\.warmup: unknown field \(did you mean 'warmup_steps'\?\)"),
        (
            {**BASE, "stages": [{"name": "pretrain"}]},
            r"stages\[0\]\.name: expected one of 'action', 'joint', 'refiner', got 'pretrain'",
        ),
        ({**BASE, "stages": [{"name": "action", "lora": {}}]}, r"stages\[0\]\.lora: LoRA applies to the 'joint'"),
        ({"data": {"train": []}}, r"data\.train: at least one"),
        ({**BASE, "precision": "fp8"}, r"precision: expected one of 'fp32', 'bf16', 'fp16', got 'fp8'"),
        ({**BASE, "model": {"preset": "tiny", "init_from": "ckpt"}}, r"model: set exactly one of"),
        ({**BASE, "loss": {"vqa": 1.0}}, r"loss\.vqa: > 0 needs data\.vqa"),
        ({**BASE, "data": {"train": ["d"], "batch_size": 0}}, r"data\.batch_size: must be > 0"),
        ({**BASE, "stages": [{"name": "action", "epochs": 1.5}]}, r"stages\[0\]\.epochs: expected int, got 1\.5"),
    ],
)
def test_errors_name_the_field(tmp_path, data, message):
    with pytest.raises(ConfigError, match=message) as info:
        _load(tmp_path, data)
    assert "train.yaml" in str(info.value)  # and the file


def test_round_trip_and_defaults(tmp_path):
    cfg = _load(tmp_path, {**BASE, "optim": {"lr": 1}, "stages": [{"name": "joint", "lora": {"rank": 4}}]})
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert cfg.stages[0].lora.rank == 4 and cfg.stages[0].lora.targets == ["q_proj", "k_proj", "v_proj", "o_proj"]
    cfg.save_yaml(tmp_path / "again.yaml")
    assert TrainConfig.load_yaml(tmp_path / "again.yaml") == cfg


def test_shipped_configs_validate():
    for path in sorted((ROOT / "configs" / "train").glob("*.yaml")):
        cfg = TrainConfig.load_yaml(path)
        assert cfg.stages, path


def test_tiny_demo_model_is_buildable():
    from automot.training.stages import build_training_model

    cfg = TrainConfig.load_yaml(ROOT / "configs" / "train" / "tiny_demo.yaml")
    model = build_training_model(cfg.model, seed=0)
    assert model.config.tokens.num_decision_tokens == 16
    assert sum(p.numel() for p in model.parameters()) * 4 < 20 * 2**20  # fits the 20 MB checkpoint budget
    with pytest.raises(ConfigError, match=r"model\.overrides\.tokens\.bogus: not a field"):
        cfg.model.overrides = {"tokens": {"bogus": 1}}
        build_training_model(cfg.model, seed=0)


def test_cli_registers_train_and_collect(tmp_path, capsys):
    from automot.training.cli import register

    parser = argparse.ArgumentParser(prog="automot")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["collect", "--routes", "merge", "--out", str(tmp_path), "--episodes", "2"])
    assert args.episodes == 2 and args.world == "embedded"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**BASE, "optim": {"grad_accum": "two"}}))
    args = parser.parse_args(["train", "--config", str(bad)])
    with pytest.raises(ConfigError, match="optim.grad_accum: expected int") as info:  # automot.cli: exit 2
        args.func(args)
    assert info.value.exit_code == 2
