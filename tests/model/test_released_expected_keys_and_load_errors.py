"""The released-checkpoint loader checked against docs/released-checkpoint.md §1 (independent derivations).

* ``automot convert --expected-keys --preset automot-4b`` must list exactly the tensors of
  docs/released-checkpoint.md §1.3: the non-BEV part is rebuilt here name by name from that text (not from
  model/released_names.py), the BEV part is counted from the TF++ / timm ``regnety_032`` structure.
* Bad released folders fail with errors that name the file (missing folder, missing config.json, corrupt header).
"""

from __future__ import annotations

import argparse
import json

import pytest

from automot.model.config import ConfigError
from automot.model.released.cli import register
from automot.model.released.loader import load_released
from automot.model.released.synthetic import jsonpickle_like, qwen3vl_config_json, tiny_bev_config, tiny_released_config
from automot.model.understanding import PretrainedLoadError

H, V, L = 2560, 151936, 36


def _spec_non_bev() -> dict[str, tuple[int, ...]]:
    """docs/released-checkpoint.md §1.3, written out (required tensors only: the tied LM head may be absent)."""
    s: dict[str, tuple[int, ...]] = {}
    lm = "language_model.model."
    s[lm + "embed_tokens.weight"] = (V, H)
    s[lm + "norm.weight"] = (H,)
    s[lm + "norm_mot_gen.weight"] = (H,)
    for i in range(L):
        p = f"{lm}layers.{i}."
        for n in ("input_layernorm", "post_attention_layernorm", "input_layernorm_mot_gen",
                  "post_attention_layernorm_mot_gen"):  # fmt: skip
            s[p + n + ".weight"] = (H,)
        a = p + "self_attn."
        s[a + "q_proj.weight"], s[a + "k_proj.weight"] = (4096, H), (1024, H)
        s[a + "v_proj.weight"], s[a + "o_proj.weight"] = (1024, H), (H, 4096)
        s[a + "q_norm.weight"] = s[a + "k_norm.weight"] = (128,)
        s[a + "q_proj_mot_gen.weight"], s[a + "k_proj_mot_gen.weight"] = (1280, H), (320, H)
        s[a + "v_proj_mot_gen.weight"], s[a + "o_proj_mot_gen.weight"] = (320, H), (H, 1280)
        s[a + "q_norm_mot_gen.weight"] = s[a + "k_norm_mot_gen.weight"] = (80,)
        for mlp, inter in (("mlp.", 9728), ("mlp_mot_gen.", 4864)):
            s[p + mlp + "gate_proj.weight"] = s[p + mlp + "up_proj.weight"] = (inter, H)
            s[p + mlp + "down_proj.weight"] = (H, inter)
    vm = "vision_model."
    s[vm + "patch_embed.proj.weight"], s[vm + "patch_embed.proj.bias"] = (1024, 3, 2, 16, 16), (1024,)
    s[vm + "pos_embed.weight"] = (2304, 1024)

    def lin(prefix, out, inp, bias=True):
        s[prefix + ".weight"] = (out, inp)
        if bias:
            s[prefix + ".bias"] = (out,)

    for b in range(24):
        p = f"{vm}blocks.{b}."
        for n in ("norm1", "norm2"):
            s[p + n + ".weight"] = s[p + n + ".bias"] = (1024,)
        lin(p + "attn.qkv", 3072, 1024)
        lin(p + "attn.proj", 1024, 1024)
        lin(p + "mlp.linear_fc1", 4096, 1024)
        lin(p + "mlp.linear_fc2", 1024, 4096)
    for p, norm in [(vm + "merger.", 1024)] + [(f"{vm}deepstack_merger_list.{k}.", 4096) for k in range(3)]:
        s[p + "norm.weight"] = s[p + "norm.bias"] = (norm,)
        lin(p + "linear_fc1", 4096, 4096)
        lin(p + "linear_fc2", H, 4096)
    for n, k in (("reasoning", 8), ("route", 20), ("waypoint", 6)):
        s[f"{n}_queries.weight"] = (k, 588)
    for n in ("reasoning", "route", "waypoint"):
        lin(f"{n}_projector.fc1", H, 588)
        lin(f"{n}_projector.fc2", H, H)
    lin("bev_encoder_proj", H, 1512)
    for p in ("target_point_encoder.mlp.", "velocity_encoder."):
        lin(p + "0", 256, 2 if p.startswith("target") else 1)
        lin(p + "2", 512, 256)
        lin(p + "4", H, 512)
    for p, q in (("route_head.", 20), ("waypoints_head.", 6)):
        s[p + "query"] = (1, q, H)
        lin(p + "mlp.0", 512, H)
        lin(p + "mlp.2", 256, 512)
        lin(p + "mlp.4", 2, 256, bias=False)
    lin("velocity_head.0", H, H)
    lin("velocity_head.2", 3, H)
    return s


def _regnety_032_count() -> int:
    """timm regnety_032 (features_only, no num_batches_tracked): stem ConvBN + 21 SE bottlenecks + 4 downsamples."""
    conv_bn = 5  # conv.weight + bn.{weight,bias,running_mean,running_var}
    block = 3 * conv_bn + 4  # conv1/conv2/conv3 + se.fc1/fc2 (weight, bias)
    return conv_bn + (2 + 5 + 13 + 1) * block + 4 * conv_bn


def _fusion_count(n_layer: int = 2) -> int:
    """TF++ fusion + top-down path: 4 GPTs, 2 x 4 1x1 channel convs, c5_conv, up_conv5, up_conv4."""
    gpt_block = 2 * 2 + 4 * 2 + 2 * 2  # ln1, ln2, attn.{key,query,value,proj}, mlp.{0,2} (weight + bias each)
    gpt = 1 + n_layer * gpt_block + 2  # pos_emb, blocks, ln_f
    return 4 * gpt + 2 * 4 * 2 + 3 * 2


@pytest.fixture(scope="module")
def listed():
    import contextlib
    import io

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["convert", "--expected-keys", "--preset", "automot-4b"])
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert args.func(args) == 0
    rows = {}
    for line in out.getvalue().splitlines():
        name, shape = line.split(" ", 1)
        assert name not in rows, f"listed twice: {name}"
        rows[name] = tuple(json.loads(shape))
    return rows


def test_expected_keys_match_spec_table_exactly(listed):
    spec = _spec_non_bev()
    assert len(spec) == 3 + 22 * L + 3 + 24 * 12 + 6 + 3 * 6 + 45 == 1155
    got = {n: s for n, s in listed.items() if not n.startswith("bev_encoder.")}
    assert sorted(set(spec) - set(got)) == [] and sorted(set(got) - set(spec)) == []
    wrong = {n: (spec[n], got[n]) for n in spec if spec[n] != got[n]}
    assert wrong == {}


def test_expected_keys_bev_count_and_total(listed):
    bev = [n for n in listed if n.startswith("bev_encoder.")]
    image = [n for n in bev if n.startswith("bev_encoder.image_encoder.")]
    lidar = [n for n in bev if n.startswith("bev_encoder.lidar_encoder.")]
    assert len(image) == len(lidar) == _regnety_032_count() == 424
    assert len(bev) - len(image) - len(lidar) == _fusion_count() == 162
    assert len(listed) == 1155 + 1010 == 2165
    assert listed["bev_encoder.lidar_encoder.stem.conv.weight"] == (32, 1, 3, 3)  # use_ground_plane False
    assert not any("inv_freq" in n or n.startswith("language_model.lm_head") for n in listed)


def _tiny_folder(tmp_path, weights: bytes | None):
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "config.json").write_text(json.dumps(qwen3vl_config_json(tiny_released_config())))
    (tmp_path / "bev_config.json").write_text(json.dumps(jsonpickle_like(tiny_bev_config())))
    if weights is not None:
        (tmp_path / "model.safetensors").write_bytes(weights)
    return tmp_path


def test_missing_folder_and_missing_config_name_the_path(tmp_path):
    with pytest.raises(ConfigError, match=r"released checkpoint folder not found: .*nowhere"):
        load_released(tmp_path / "nowhere", preset=tiny_released_config())
    folder = _tiny_folder(tmp_path / "nocfg", None)
    (folder / "config.json").unlink()
    with pytest.raises(ConfigError, match=r"nocfg/config\.json: missing"):
        load_released(folder, preset=tiny_released_config())
    folder = _tiny_folder(tmp_path / "noweights", None)
    with pytest.raises(PretrainedLoadError, match=r"no model\.safetensors and no model-\*\.safetensors"):
        load_released(folder, preset=tiny_released_config())


def test_corrupt_header_is_a_load_error_naming_the_file(tmp_path):
    header = b"{not json}      "
    folder = _tiny_folder(tmp_path / "corrupt", len(header).to_bytes(8, "little") + header)
    with pytest.raises(PretrainedLoadError, match=r"model\.safetensors"):
        load_released(folder, preset=tiny_released_config())


def test_truncated_weights_name_the_file(tmp_path):
    import torch
    from safetensors.torch import save_file

    src = tmp_path / "full.safetensors"
    save_file({"route_queries.weight": torch.zeros(20, 24)}, str(src))
    data = src.read_bytes()
    folder = _tiny_folder(tmp_path / "trunc", data[: len(data) - 100])
    with pytest.raises(PretrainedLoadError, match=r"trunc/model\.safetensors: not a valid safetensors file"):
        load_released(folder, preset=tiny_released_config())
