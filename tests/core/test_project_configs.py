"""The five configs built on automot.config (model, agent, training, BEV encoder, refiner): one error class, round
trips, validation listing every problem, and the config files written beside checkpoints, drive runs and collected
datasets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import automot.config as typed_config
from automot import errors
from automot.config import from_dict, read_yaml_mapping, save_yaml
from automot.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------------------------
# the five configs
# ---------------------------------------------------------------------------------------------------------------


def test_one_error_class_project_wide():
    from automot.agent import config as agent_config
    from automot.model import config as model_config
    from automot.model.released import bev_config
    from automot.training import config as train_config

    for module in (agent_config, model_config, train_config, bev_config, typed_config):
        assert module.ConfigError is errors.ConfigError
    assert not hasattr(train_config, "TrainConfigError")
    assert issubclass(errors.ConfigError, ValueError) and errors.ConfigError.exit_code == errors.ExitCode.USAGE


def test_all_five_loaders_raise_the_same_error_class(tmp_path):
    from automot.agent.config import load_agent_config
    from automot.model.config import AutoMoTConfig
    from automot.model.refiner import load_refiner
    from automot.model.released.bev_config import load_bev_config
    from automot.training.config import TrainConfig

    def raised(fn, *args) -> BaseException:
        with pytest.raises(Exception) as info:
            fn(*args)
        return info.value

    (tmp_path / "model.yaml").write_text("action: {num_heads: four}\n")
    (tmp_path / "agent.yaml").write_text("runtime: {sync_every: 0}\n")
    (tmp_path / "train.yaml").write_text("data: {train: [d]}\noptim: {warmup: 3}\n")
    (tmp_path / "bev.json").write_text(json.dumps({"n_head": "four"}))
    (tmp_path / "refiner.safetensors").write_bytes(b"")
    (tmp_path / "refiner.yaml").write_text("d_model: 64\n")
    cases = [
        (AutoMoTConfig.load_yaml, tmp_path / "model.yaml", "action.num_heads: expected int, got 'four' (str)"),
        (load_agent_config, tmp_path / "agent.yaml", "runtime.sync_every: must be >= 1, got 0 (int)"),
        (TrainConfig.load_yaml, tmp_path / "train.yaml", "optim.warmup: unknown field (did you mean 'warmup_steps'?)"),
        (load_bev_config, tmp_path / "bev.json", "n_head: expected int, got 'four' (str)"),
        (load_refiner, tmp_path, "cond_dim: required field missing"),
    ]
    for fn, arg, message in cases:
        exc = raised(fn, arg)
        assert type(exc) is errors.ConfigError, (fn, exc)
        assert exc.problems == [message], fn
        assert str(arg) in str(exc), fn


def test_model_config_round_trip(tmp_path):
    from automot.model.config import AutoMoTConfig, get_config

    for name in ("tiny", "small", "automot-4b"):
        cfg = get_config(name)
        cfg.save_yaml(tmp_path / f"{name}.yaml")
        assert AutoMoTConfig.load_yaml(tmp_path / f"{name}.yaml") == cfg
        assert AutoMoTConfig.from_dict(cfg.to_dict()) == cfg
    custom = get_config("tiny")
    custom.tokens.route_cumsum = "xy"
    custom.prompt.system = "Drive: carefully."
    custom.tokens.encoder_widths = [8, 16]
    save_yaml(custom, tmp_path / "custom.yaml")
    assert AutoMoTConfig.load_yaml(tmp_path / "custom.yaml") == custom


def test_model_config_validation_lists_every_problem():
    from automot.model.config import get_config

    cfg = get_config("tiny")
    cfg.action.head_dim = 9  # odd, and 2 x 9 still fits the UE's 4 x 12
    cfg.tokens.num_scene_tokens = 4  # scene_dim stays 0
    with pytest.raises(ConfigError) as info:
        cfg.validate()
    assert info.value.problems == [
        "tokens.scene_dim: must be > 0 exactly when tokens.num_scene_tokens is, got scene_dim=0 with "
        "num_scene_tokens=4",
        "action.head_dim: must be even, got 9",
    ]
    with pytest.raises(ConfigError, match=r"tokens\.route_cumsum: expected one of 'points', 'xy', got 'yx'"):
        get_config({**get_config("tiny").to_dict(), "tokens": {"route_cumsum": "yx"}})


def test_agent_config_round_trip(tmp_path):
    from automot.agent.config import AgentConfig, agent_config_from_dict, load_agent_config, save_agent_config

    cfg = agent_config_from_dict(
        {
            "image_size": [320, 160],
            "runtime": {"mode": "sync", "sync_every": 3, "options": {"threads_fast": 1}},
            "gnss": {"lat_ref": 1.5, "lon_ref": 2.5},
            "history": {"offsets": [3, 0]},
            "control": {"escape": {"enabled": True, "steer": -0.5}},
            "state_estimator": "ukf",
        }
    )
    assert cfg != AgentConfig()
    save_agent_config(cfg, tmp_path / "agent.yaml")
    assert load_agent_config(tmp_path / "agent.yaml") == cfg
    for name in ("automot_front.yaml", "bench2drive_6cam.yaml", "demo_tiny.yaml"):
        shipped = load_agent_config(ROOT / "leaderboard_configs" / name)
        save_yaml(shipped, tmp_path / name)
        assert load_agent_config(tmp_path / name) == shipped, name


def test_train_config_round_trip(tmp_path):
    from automot.training.config import TrainConfig

    cfg = TrainConfig.from_dict(
        {
            "output_dir": "runs/x",
            "num_threads": 1,
            "precision": "bf16",
            "model": {"preset": "tiny", "overrides": {"tokens": {"num_decision_tokens": 4}}},
            "data": {"train": ["a", "b"], "val": ["c"], "camera": "CAM_FRONT", "batch_size": 2},
            "optim": {"lr": 1, "betas": [0.8, 0.9], "schedule": "constant"},
            "stages": [{"name": "action", "max_steps": 5}, {"name": "joint", "lora": {"rank": 4}}, {"name": "refiner"}],
        }
    )
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    cfg.save_yaml(tmp_path / "train.yaml")
    assert TrainConfig.load_yaml(tmp_path / "train.yaml") == cfg
    for path in sorted((ROOT / "configs" / "train").glob("*.yaml")):
        shipped = TrainConfig.load_yaml(path)
        shipped.save_yaml(tmp_path / path.name)
        assert TrainConfig.load_yaml(tmp_path / path.name) == shipped, path


def test_train_config_validation_lists_every_problem():
    from automot.training.config import TrainConfig

    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict(
            {
                "data": {"train": [], "batch_size": 0},
                "stages": [{"name": "action", "end_to_end": True}],
                "refiner": {"d_model": 10, "num_heads": 4},
            },
            source="t.yaml",
        )
    assert info.value.problems == [
        "data.train: at least one dataset directory is required",
        "data.batch_size: must be > 0, got 0",
        "stages[0].end_to_end: only meaningful for the 'refiner' stage",
        "refiner.d_model: must be a multiple of refiner.num_heads (4), got 10",
    ]
    assert str(info.value).startswith("t.yaml: 4 problems: data.train:")


def test_bev_config_round_trip_and_released_quirks(tmp_path):
    from automot.model.released.bev_config import BEVConfig, bev_config_from_dict, load_bev_config
    from automot.model.released.synthetic import tiny_bev_config

    cfg = tiny_bev_config()
    assert cfg != BEVConfig()
    cfg.save(tmp_path / "bev_config.json")
    loaded = load_bev_config(tmp_path / "bev_config.json")
    assert loaded == cfg
    assert {"n_layer", "lidar_pos", "realign_lidar"} <= loaded.from_file and "from_file" not in loaded.from_file
    assert "from_file" not in json.loads((tmp_path / "bev_config.json").read_text())
    # TF++ writes flags as 0/1 and may write counts as whole floats; unknown attributes are ignored.
    quirky = bev_config_from_dict({"detect_boxes": 0, "n_layer": 3.0, "lidar_pos": [1, 2, 3], "other": "x"})
    assert quirky.detect_boxes is False and quirky.n_layer == 3 and type(quirky.n_layer) is int
    assert quirky.lidar_pos == [1.0, 2.0, 3.0] and quirky.from_file == {"detect_boxes", "n_layer", "lidar_pos"}
    with pytest.raises(ConfigError) as info:
        bev_config_from_dict({"lidar_seq_len": 2, "image_architecture": "video_resnet"}, "b.json")
    assert info.value.problems == [
        "lidar_seq_len: only single-sweep LiDAR (1) is supported, got 2",
        "image_architecture: temporal LiDAR encoders are not supported, got 'video_resnet'",
    ]
    bad = tmp_path / "broken.json"
    bad.write_text('{"n_layer": 1,\n "n_head": }')
    with pytest.raises(ConfigError, match=r"broken\.json: not valid JSON at line 2, column 12"):
        load_bev_config(bad)


def test_refiner_config_round_trip(tmp_path):
    from automot.model.refiner import ActionRefiner, RefinerConfig, load_refiner, load_refiner_config, save_refiner

    cfg = RefinerConfig(cond_dim=40, num_waypoints=4, d_model=32, num_heads=2, steps=3, noise_std=0.5)
    save_refiner(ActionRefiner(cfg), tmp_path)
    assert load_refiner_config(tmp_path / "refiner.yaml") == cfg
    assert load_refiner(tmp_path).config == cfg
    (tmp_path / "refiner.yaml").write_text("cond_dim: 40\nd_model: 30\nnum_heads: 4\nstesp: 2\n")
    with pytest.raises(ConfigError) as info:
        load_refiner(tmp_path)
    assert info.value.problems == ["stesp: unknown field (did you mean 'steps'?)"]
    (tmp_path / "refiner.yaml").write_text("cond_dim: 40\nd_model: 30\nnum_heads: 4\n")
    with pytest.raises(ConfigError) as info:
        load_refiner(tmp_path)
    assert info.value.problems == ["d_model: must be a multiple of num_heads (4), got 30"]


# ---------------------------------------------------------------------------------------------------------------
# configs written next to checkpoints, runs and datasets (all through automot.config's atomic writer)
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture
def atomic_writes(monkeypatch) -> list[str]:
    """Names of the files written through automot.config.write_atomic during the test."""
    names: list[str] = []
    original = typed_config.write_atomic

    def recording(path, text):
        names.append(Path(path).name)
        return original(path, text)

    monkeypatch.setattr(typed_config, "write_atomic", recording)
    return names


def test_checkpoint_dirs_hold_their_configs(tmp_path, atomic_writes):
    from automot.model import build_model
    from automot.model.config import AutoMoTConfig
    from automot.model.io import save_pretrained
    from automot.model.refiner import ActionRefiner, RefinerConfig, load_refiner_config
    from automot.training.checkpoint import save_model_dir
    from automot.training.config import TrainConfig

    model = build_model("tiny", seed=0)
    save_pretrained(model, tmp_path / "model")
    assert atomic_writes == ["config.yaml"]
    assert AutoMoTConfig.load_yaml(tmp_path / "model" / "config.yaml") == model.config

    train_cfg = TrainConfig.from_dict({"data": {"train": ["d"]}, "stages": [{"name": "refiner"}]})
    refiner = ActionRefiner(RefinerConfig(cond_dim=model.config.action.hidden_size))
    save_model_dir(tmp_path / "ckpt", model, refiner, train_cfg)
    assert atomic_writes[1:] == ["config.yaml", "refiner.yaml", "train_config.yaml"]
    assert TrainConfig.load_yaml(tmp_path / "ckpt" / "train_config.yaml") == train_cfg
    assert load_refiner_config(tmp_path / "ckpt" / "refiner.yaml") == refiner.config


CONFIG_AGENT = """
from automot.agent.config import load_agent_config
from automot.agent.contract import AutonomousAgent, Track, make_control


def get_entry_point():
    return "ConfigAgent"


class ConfigAgent(AutonomousAgent):
    def setup(self, path_to_conf_file):
        self.track = Track.SENSORS
        self.config = load_agent_config(path_to_conf_file.partition("+")[0])  # worlds pass CONFIG+save_name

    def sensors(self):
        return [{"type": "sensor.speedometer", "id": "SPEED", "reading_frequency": 20}]

    def run_step(self, input_data, timestamp):
        return make_control(brake=1.0)
"""


def test_drive_run_folder_holds_the_resolved_agent_config(tmp_path, atomic_writes):
    from automot.agent.config import load_agent_config
    from automot.world.runner import run_route

    agent_file = tmp_path / "config_agent_for_runs.py"
    agent_file.write_text(CONFIG_AGENT)
    (tmp_path / "weights").mkdir()
    conf = tmp_path / "agent.yaml"
    conf.write_text("model: {checkpoint: weights}\nruntime: {mode: sync}\n")
    run_route("highway_lane_keep", agent_file, str(conf), tmp_path / "run", ticks=3, progress=False)
    assert "agent_config.yaml" in atomic_writes
    saved = load_agent_config(tmp_path / "run" / "agent_config.yaml")
    assert saved.runtime.mode == "sync"
    assert saved.model.checkpoint == str((tmp_path / "weights").resolve())  # resolved beside the config file
    assert saved == load_agent_config(conf)


def test_collected_dataset_holds_its_collect_config(tmp_path, atomic_writes):
    from automot.training.collect import CollectOptions, collect

    opts = CollectOptions(
        routes=["merge"], episodes=1, out=str(tmp_path / "ds"), image_size=(64, 32), max_ticks=5, progress=False
    )
    collect(opts)
    assert "collect_config.yaml" in atomic_writes
    saved = read_yaml_mapping(tmp_path / "ds" / "collect_config.yaml")
    assert saved["routes"] == ["merge"] and saved["image_size"] == [64, 32] and saved["max_ticks"] == 5
    assert from_dict(CollectOptions, saved) == opts
