"""Configs (YAML), presets, save/load round trips and the errors users see."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import yaml

from automot.model import (
    AutoMoTConfig,
    ConfigError,
    build_model,
    get_config,
    load_pretrained,
    make_dummy_inputs,
    save_pretrained,
)
from automot.model.released_names import released_manifest, to_released_name
from automot.model.summary import parameter_summary
from automot.model.understanding import PretrainedLoadError


def test_yaml_round_trip(tmp_path):
    for name in ("tiny", "small", "automot-4b"):
        cfg = get_config(name)
        cfg.save_yaml(tmp_path / f"{name}.yaml")
        assert AutoMoTConfig.load_yaml(tmp_path / f"{name}.yaml") == cfg


def test_config_errors_name_the_field(tmp_path):
    data = get_config("tiny").to_dict()
    data["action"]["num_heads"] = "four"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"bad\.yaml: action\.num_heads: expected int, got 'four' \(str\)"):
        AutoMoTConfig.load_yaml(tmp_path / "bad.yaml")
    data = get_config("tiny").to_dict()
    data["tokens"]["num_route_pts"] = 20
    with pytest.raises(
        ConfigError, match=r"tokens\.num_route_pts: unknown field \(did you mean 'num_route_points'\?\)"
    ):
        AutoMoTConfig.from_dict(data)
    cfg = get_config("tiny")
    cfg.action.num_kv_heads = 2  # 2/2 = group 1, UE has 4/2 = 2
    with pytest.raises(
        ConfigError, match=r"action\.num_kv_heads: query heads per KV head must match .* \(2\), got 2/2"
    ):
        cfg.validate()
    with pytest.raises(ConfigError, match="unknown preset"):
        get_config("tiny-but-wrong")


def test_automot_4b_on_meta_matches_released_layout():
    model = build_model("automot-4b", device="meta")
    assert all(p.device.type == "meta" for p in model.parameters())
    counts = parameter_summary(model)["parameters"]
    assert 1.55e9 <= counts["action"] <= 1.70e9
    assert 3.9e9 <= counts["understanding"] <= 4.1e9  # Qwen3-VL-4B LM with tied embeddings
    assert 0.38e9 <= counts["vision"] <= 0.45e9
    man = released_manifest(model)
    expected = {  # docs/released-checkpoint.md §1.3
        "language_model.model.embed_tokens.weight": (151936, 2560),
        "language_model.lm_head.weight": (151936, 2560),
        "language_model.model.norm_mot_gen.weight": (2560,),
        "language_model.model.layers.35.self_attn.q_proj.weight": (4096, 2560),
        "language_model.model.layers.35.self_attn.q_proj_mot_gen.weight": (1280, 2560),
        "language_model.model.layers.0.self_attn.k_proj_mot_gen.weight": (320, 2560),
        "language_model.model.layers.0.self_attn.v_proj_mot_gen.weight": (320, 2560),
        "language_model.model.layers.0.self_attn.o_proj_mot_gen.weight": (2560, 1280),
        "language_model.model.layers.0.self_attn.q_norm_mot_gen.weight": (80,),
        "language_model.model.layers.0.self_attn.k_norm.weight": (128,),
        "language_model.model.layers.0.mlp_mot_gen.gate_proj.weight": (4864, 2560),
        "language_model.model.layers.0.mlp_mot_gen.down_proj.weight": (2560, 4864),
        "language_model.model.layers.0.input_layernorm_mot_gen.weight": (2560,),
        "language_model.model.layers.0.post_attention_layernorm_mot_gen.weight": (2560,),
        "vision_model.patch_embed.proj.weight": (1024, 3, 2, 16, 16),
        "vision_model.pos_embed.weight": (2304, 1024),
        "vision_model.blocks.23.attn.qkv.weight": (3072, 1024),
        "vision_model.merger.linear_fc1.weight": (4096, 4096),
        "vision_model.deepstack_merger_list.2.linear_fc2.weight": (2560, 4096),
        "reasoning_queries.weight": (8, 588),
        "route_queries.weight": (20, 588),
        "waypoint_queries.weight": (6, 588),
        "reasoning_projector.fc1.weight": (2560, 588),
        "route_projector.fc2.weight": (2560, 2560),
        "bev_encoder_proj.weight": (2560, 1512),
        "target_point_encoder.mlp.4.weight": (2560, 512),
        "velocity_encoder.0.weight": (256, 1),
        "route_head.mlp.4.weight": (2, 256),
        "route_head.query": (1, 20, 2560),
        "waypoints_head.mlp.0.weight": (512, 2560),
        "velocity_head.2.weight": (3, 2560),
    }
    for name, shape in expected.items():
        assert man.get(name) == shape, name
    assert "route_head.mlp.4.bias" not in man  # last head layer has no bias
    assert len([n for n in man if "_mot_gen." in n]) == 36 * 11 + 1  # 11 per layer + norm_mot_gen
    assert len(set(man)) == len(man)  # the mapping is one-to-one


def test_released_name_mapping_rejects_unknown():
    with pytest.raises(KeyError):
        to_released_name("something.else")


def test_save_load_round_trip(tiny_model, tmp_path):
    out = save_pretrained(tiny_model, tmp_path / "ckpt")
    assert (out / "model.safetensors").is_file() and (out / "config.yaml").is_file()
    loaded = load_pretrained(out)
    obs, state = make_dummy_inputs(tiny_model.config, batch=1, seed=9)
    a = tiny_model.act(tiny_model.prefill(obs), state)
    b = loaded.act(loaded.prefill(obs), state)
    assert torch.equal(a.path, b.path) and torch.equal(a.decision_logits, b.decision_logits)
    assert a.decision_text == b.decision_text


def test_load_errors_are_clear(tiny_model, tmp_path):
    with pytest.raises(PretrainedLoadError, match="not found"):
        load_pretrained(tmp_path / "nope")
    out = save_pretrained(tiny_model, tmp_path / "ckpt")
    cfg = AutoMoTConfig.load_yaml(out / "config.yaml")
    cfg.action.intermediate_size = 80  # weights were saved with 72
    cfg.save_yaml(out / "config.yaml")
    with pytest.raises(
        PretrainedLoadError, match=r"action_layers\.0\.mlp\.gate_proj\.weight: expected \(80, 40\), got \(72, 40\)"
    ):
        load_pretrained(out)


def test_understanding_from_local_hf_directory(tiny_model, tmp_path):
    hf_dir = tmp_path / "qwen3vl-tiny"
    tiny_model.understanding.vlm.save_pretrained(str(hf_dir))
    cfg = get_config("tiny")
    cfg.understanding.pretrained_path = str(hf_dir)
    model = build_model(cfg, seed=123)
    src = tiny_model.understanding.vlm.state_dict()
    for name, tensor in model.understanding.vlm.state_dict().items():
        assert torch.equal(tensor, src[name]), name

    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}))
    cfg.understanding.pretrained_path = str(wrong)
    with pytest.raises(PretrainedLoadError, match="model_type is 'llama', expected 'qwen3_vl'"):
        build_model(cfg)
    cfg.understanding.pretrained_path = str(tmp_path / "missing")
    with pytest.raises(PretrainedLoadError, match="directory not found"):
        build_model(cfg)


def test_cli_model_json():
    out = subprocess.run(
        [sys.executable, "-m", "automot.cli", "model", "--preset", "automot-4b", "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    data = json.loads(out.stdout)
    assert set(data["parameters"]) == {"vision", "understanding", "action", "total"}
    assert 1.55e9 <= data["parameters"]["action"] <= 1.70e9
    assert data["layout"]["num_layers"] == 36
    assert data["layout"]["action"]["head_dim"] == 80
    bad = subprocess.run(
        [sys.executable, "-m", "automot.cli", "model", "--preset", "nope"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "unknown preset" in bad.stderr
