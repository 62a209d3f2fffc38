"""Released-format checkpoints: naming, strict loading, convert (CLI + API), config checks, expected-key listing."""

from __future__ import annotations

import argparse
import json
import re

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from automot.model.config import ConfigError
from automot.model.released.bev_config import load_bev_config
from automot.model.released.cli import register
from automot.model.released.loader import convert_released, load_converted, load_released
from automot.model.released.prompt import act_released, bev_state, build_released_observation
from automot.model.released.synthetic import build_tiny_released, tiny_released_config, write_released_folder
from automot.model.understanding import PretrainedLoadError

# Written from docs/released-checkpoint.md §1.3, independently of model/released_names.py.
_SPEC_RULES = [
    (r"understanding\.vlm\.model\.language_model\.(.+)", r"language_model.model.\1"),
    (r"understanding\.vlm\.model\.visual\.(.+)", r"vision_model.\1"),
    (r"understanding\.vlm\.lm_head\.weight", "language_model.lm_head.weight"),
    (
        r"action_layers\.(\d+)\.input_layernorm\.weight",
        r"language_model.model.layers.\1.input_layernorm_mot_gen.weight",
    ),
    (
        r"action_layers\.(\d+)\.post_attention_layernorm\.weight",
        r"language_model.model.layers.\1.post_attention_layernorm_mot_gen.weight",
    ),
    (
        r"action_layers\.(\d+)\.self_attn\.([qkvo])_proj\.weight",
        r"language_model.model.layers.\1.self_attn.\2_proj_mot_gen.weight",
    ),
    (
        r"action_layers\.(\d+)\.self_attn\.([qk])_norm\.weight",
        r"language_model.model.layers.\1.self_attn.\2_norm_mot_gen.weight",
    ),
    (
        r"action_layers\.(\d+)\.mlp\.(gate|up|down)_proj\.weight",
        r"language_model.model.layers.\1.mlp_mot_gen.\2_proj.weight",
    ),
    (r"action_norm\.weight", "language_model.model.norm_mot_gen.weight"),
    (r"action_io\.(.+)", r"\1"),
]


def spec_name(ours: str) -> str:
    for pattern, repl in _SPEC_RULES:
        if re.fullmatch(pattern, ours):
            return re.sub(pattern, repl, ours)
    raise AssertionError(f"no docs/released-checkpoint.md §1.3 rule for {ours}")


@pytest.fixture(scope="module")
def source():
    return build_tiny_released(seed=3)


@pytest.fixture(scope="module")
def folder(source, tmp_path_factory):
    return write_released_folder(*source, tmp_path_factory.mktemp("released"))


@pytest.fixture(scope="module")
def inputs(source):
    model, bev = source
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, (512, 1024, 3), dtype=np.uint8) for _ in range(4)]
    image = torch.rand(1, 3, bev.cfg.cropped_height, bev.cfg.cropped_width) * 255
    lidar = (torch.rand(1, 1, 64, 64) < 0.2).float()
    return images, np.array([[12.5, -3.25], [30.0, 4.125]]), 7.35, image, lidar


@pytest.fixture(scope="module")
def reference(source, inputs):
    return _run(*source, inputs)


def _run(model, bev, inputs):
    images, tp, speed, image, lidar = inputs
    with torch.no_grad():
        feat = bev(image, lidar)
    snap = model.prefill(build_released_observation(model, images, tp, speed))
    return feat, act_released(model, snap, bev_state(model, tp, speed, feat))


def test_written_names_follow_the_spec_table(source, folder):
    model, bev = source
    stored = load_file(str(folder / "model.safetensors"))
    expected = {spec_name(n) for n in model.state_dict()} - {"language_model.lm_head.weight"}
    expected |= {"bev_encoder." + n for n in bev.state_dict()}
    assert set(stored) == expected
    h, ae = 128, model.config.action
    assert stored["language_model.model.layers.1.self_attn.q_proj_mot_gen.weight"].shape == (
        ae.num_heads * ae.head_dim,
        h,
    )
    assert stored["language_model.model.layers.0.self_attn.k_norm_mot_gen.weight"].shape == (ae.head_dim,)
    assert stored["bev_encoder.lidar_encoder.stem.conv.weight"].shape[1] == 1  # LiDAR branch: 1 input channel
    assert "bev_encoder.transformers.3.ln_f.weight" in stored and "bev_encoder.c5_conv.weight" in stored


def test_load_released_runs_end_to_end_and_matches_source(source, folder, inputs, reference):
    model = load_released(folder, dtype="fp32", preset=tiny_released_config())
    assert model.understanding.vlm.lm_head.weight is model.understanding.language_model.embed_tokens.weight
    assert model.released.bev_config.image_architecture == "regnety_002"
    ref_feat, ref = reference
    feat, out = _run(model, model.released.bev_encoder, inputs)
    assert torch.isfinite(out.waypoints).all() and torch.isfinite(out.path).all()
    assert torch.equal(feat, ref_feat)
    assert torch.equal(out.waypoints, ref.waypoints) and torch.equal(out.path, ref.path)
    assert torch.equal(out.decision_logits, ref.decision_logits)


def test_bf16_load_keeps_rotary_fp32_and_stays_close(source, folder, inputs, reference):
    model = load_released(folder, preset=tiny_released_config())  # bf16 by default
    assert model.action_layers[0].mlp.up_proj.weight.dtype == torch.bfloat16
    assert model.understanding.inv_freq.dtype == torch.float32
    assert torch.equal(model.understanding.inv_freq, source[0].understanding.inv_freq)
    _, ref = reference
    _, out = _run(model, model.released.bev_encoder, inputs)
    assert float((out.waypoints - ref.waypoints).abs().max()) < 5e-2


def test_convert_cli_then_load_converted(source, folder, inputs, reference, tmp_path):
    cfg_yaml = tmp_path / "tiny.yaml"
    tiny_released_config().save_yaml(cfg_yaml)
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    out = tmp_path / "ours"
    args = parser.parse_args(
        ["convert", "--from-automot", str(folder), "--out", str(out), "--dtype", "fp32", "--preset", str(cfg_yaml)]
    )
    assert args.func(args) == 0
    assert {"model.safetensors", "config.yaml", "bev_encoder.safetensors", "bev_config.json", "tokenizer.json"} <= {
        p.name for p in out.iterdir()
    }
    stored = load_file(str(out / "model.safetensors"))
    assert "action_layers.0.self_attn.q_proj.weight" in stored and "understanding.vlm.lm_head.weight" not in stored
    assert all(t.dtype == torch.float32 for t in stored.values())
    model = load_converted(out)
    _, ref = reference
    _, got = _run(model, model.released.bev_encoder, inputs)
    assert torch.equal(got.waypoints, ref.waypoints) and torch.equal(got.decision_logits, ref.decision_logits)
    bf16 = tmp_path / "bf16"
    convert_released(folder, bf16, preset=tiny_released_config())
    assert load_file(str(bf16 / "model.safetensors"))["action_norm.weight"].dtype == torch.bfloat16


def _edited(folder, tmp_path, edit):
    import shutil

    dst = tmp_path / "edited"
    shutil.copytree(folder, dst)
    tensors = load_file(str(dst / "model.safetensors"))
    edit(tensors)
    save_file(tensors, str(dst / "model.safetensors"))
    return dst


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda t: t.pop("language_model.model.layers.1.mlp_mot_gen.up_proj.weight"),
            r"missing \(1\):\s+language_model\.model\.layers\.1\.mlp_mot_gen\.up_proj\.weight",
        ),
        (lambda t: t.update(extra_head=torch.zeros(2)), r"unexpected \(1\):\s+extra_head"),
        (
            lambda t: t.update({"route_queries.weight": torch.zeros(21, 24)}),
            r"route_queries\.weight: expected \[20, 24\], got \[21, 24\]",
        ),
        (
            lambda t: t.pop("bev_encoder.transformers.2.pos_emb"),
            r"missing \(1\):\s+bev_encoder\.transformers\.2\.pos_emb",
        ),
        (
            lambda t: t.update(
                {"language_model.lm_head.weight": torch.zeros_like(t["language_model.model.embed_tokens.weight"])}
            ),
            r"lm_head\.weight differs from .*embed_tokens",
        ),
        (
            lambda t: t.update({"route_queries.weight": t["route_queries.weight"].long()}),
            r"dtype mismatch \(1\):\s+route_queries\.weight: stored as I64, expected a float",
        ),
    ],
)
def test_tensor_problems_are_hard_errors_naming_the_tensor(folder, tmp_path, edit, message):
    bad = _edited(folder, tmp_path, edit)
    with pytest.raises(PretrainedLoadError, match=message):
        load_released(bad, dtype="fp32", preset=tiny_released_config())


def test_optional_tensors_and_shards(source, folder, tmp_path, inputs, reference):
    def edit(t):  # a tied head equal to the embedding and no BatchNorm counters are both accepted
        t["language_model.lm_head.weight"] = t["language_model.model.embed_tokens.weight"].clone()
        for k in [k for k in t if k.endswith("num_batches_tracked")]:
            t.pop(k)

    dst = _edited(folder, tmp_path, edit)
    tensors = load_file(str(dst / "model.safetensors"))
    (dst / "model.safetensors").unlink()
    names = sorted(tensors)
    save_file({k: tensors[k] for k in names[::2]}, str(dst / "model-00001-of-00002.safetensors"))
    save_file({k: tensors[k] for k in names[1::2]}, str(dst / "model-00002-of-00002.safetensors"))
    model = load_released(dst, dtype="fp32", preset=tiny_released_config())
    _, ref = reference
    _, out = _run(model, model.released.bev_encoder, inputs)
    assert torch.equal(out.waypoints, ref.waypoints)
    with pytest.raises(PretrainedLoadError, match="ema.safetensors: not found"):
        load_released(dst, dtype="fp32", preset=tiny_released_config(), ema=True)
    # EMA weights = the originals with the waypoint head's last (bias-free) layer doubled: the waypoints, cumsums of
    # that layer's outputs, double exactly and the route is untouched, so the EMA file is what was loaded.
    ema = load_file(str(folder / "model.safetensors"))
    ema["waypoints_head.mlp.4.weight"] = ema["waypoints_head.mlp.4.weight"] * 2.0
    assert "waypoints_head.mlp.4.bias" not in ema
    save_file(ema, str(dst / "ema.safetensors"))
    ema_model = load_released(dst, dtype="fp32", preset=tiny_released_config(), ema=True)
    _, ema_out = _run(ema_model, ema_model.released.bev_encoder, inputs)
    torch.testing.assert_close(ema_out.waypoints, 2.0 * ref.waypoints)
    assert torch.equal(ema_out.path, ref.path)


def test_preset_mismatch_lists_every_field(folder, tmp_path):
    import shutil

    dst = tmp_path / "cfg"
    shutil.copytree(folder, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg["text_config"]["rope_theta"] = 1e6
    cfg["vision_config"]["deepstack_visual_indexes"] = [0]
    (dst / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError) as err:
        load_released(dst, dtype="fp32", preset=tiny_released_config())
    text = str(err.value)
    assert "text_config.rope.rope_theta: expected 5000000.0, got 1000000.0" in text
    assert "vision_config.deepstack_visual_indexes: expected [0, 1], got [0]" in text


def test_bev_config_is_read_as_plain_json(folder):
    cfg = load_bev_config(folder / "bev_config.json")  # jsonpickle-style markers, tuples, numpy arrays
    assert cfg.image_architecture == "regnety_002" and cfg.lidar_pos == [0.0, 0.0, 2.5]
    assert "n_layer" in cfg.from_file and cfg.n_layer == 1
    bad = folder.parent / "bad_bev.json"
    bad.write_text(json.dumps({"py/object": "x.GlobalConfig", "n_head": "four"}))
    with pytest.raises(ConfigError, match=r"bad_bev\.json: n_head: expected int, got 'four' \(str\)"):
        load_bev_config(bad)


def test_expected_keys_for_automot_4b(capsys):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["convert", "--expected-keys", "--preset", "automot-4b"])
    assert args.func(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "language_model.model.layers.35.mlp_mot_gen.down_proj.weight [2560, 4864]" in lines
    assert "language_model.model.layers.0.self_attn.q_proj_mot_gen.weight [1280, 2560]" in lines
    assert "bev_encoder.lidar_encoder.stem.conv.weight [32, 1, 3, 3]" in lines
    assert "bev_encoder.image_encoder.s4.b1.conv3.conv.weight [1512, 1512, 1, 1]" in lines
    assert "bev_encoder.transformers.0.pos_emb [1, 448, 72]" in lines  # 12x32 image + 8x8 LiDAR anchors
    assert "bev_encoder_proj.weight [2560, 1512]" in lines
    assert not any(line.startswith("language_model.lm_head.") or "num_batches_tracked" in line for line in lines)
    assert len(lines) == len(set(lines))


def test_stored_inv_freq_is_ignored_and_recomputed(source, folder, tmp_path, inputs, reference):
    def edit(t):  # some exporters save the rotary buffer; the released loader skips it
        t["language_model.model.rotary_emb.inv_freq"] = torch.zeros(16)

    model = load_released(_edited(folder, tmp_path, edit), dtype="fp32", preset=tiny_released_config())
    _, out = _run(model, model.released.bev_encoder, inputs)
    assert torch.equal(out.waypoints, reference[1].waypoints)


def test_tokenizer_problems_stop_before_any_weight_is_read(folder, tmp_path):
    import shutil

    dst = tmp_path / "notok"
    shutil.copytree(folder, dst)
    for f in ("tokenizer.json", "vocab.json", "merges.txt"):
        (dst / f).unlink(missing_ok=True)
    with pytest.raises(PretrainedLoadError, match=r"notok: no tokenizer files"):
        convert_released(dst, tmp_path / "out", preset=tiny_released_config())
    assert not (tmp_path / "out").exists()
    shutil.rmtree(dst)
    shutil.copytree(folder, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg["image_token_id"] += 1
    (dst / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=r"tokenizer and config\.json disagree: image_token_id"):
        load_released(dst, dtype="fp32", preset=tiny_released_config(), allow_config_mismatch=True)


def test_single_file_next_to_shards_is_ambiguous(folder, tmp_path):
    import shutil

    dst = tmp_path / "both"
    shutil.copytree(folder, dst)
    shutil.copy(dst / "model.safetensors", dst / "model-00001-of-00001.safetensors")
    with pytest.raises(PretrainedLoadError, match="both model.safetensors and 1 model-"):
        load_released(dst, dtype="fp32", preset=tiny_released_config())


def test_processor_that_would_resize_the_frames_is_reported(folder, tmp_path):
    import shutil

    dst = tmp_path / "pre"
    shutil.copytree(folder, dst)
    pre = json.loads((dst / "preprocessor_config.json").read_text())
    w, h = tiny_released_config().prompt.image_width, tiny_released_config().prompt.image_height
    pre["size"]["longest_edge"] = w * h // 2
    (dst / "preprocessor_config.json").write_text(json.dumps(pre))
    with pytest.raises(ConfigError, match=r"size\.longest_edge: .* frames would be downscaled"):
        load_released(dst, dtype="fp32", preset=tiny_released_config())


def test_int_dtype_request_is_a_config_error(folder):
    with pytest.raises(ConfigError, match="expected a float dtype"):
        load_released(folder, dtype=torch.int8, preset=tiny_released_config())
