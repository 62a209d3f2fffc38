"""Released bf16 rounding points (docs/released-checkpoint.md §6.1 item 7) applied by model/released/numerics.py."""

from __future__ import annotations

import math

import pytest
import torch

from automot.model import build_model, make_dummy_inputs
from automot.model.released.numerics import apply_released_numerics, keep_rotary_fp32, remove_released_numerics
from automot.model.released.synthetic import tiny_released_config
from automot.model.rope import mrope_cos_sin


@pytest.fixture()
def model():
    return build_model(tiny_released_config(), seed=0)


def _first_linear_inputs(model, target_points, speed):
    seen = {}
    io = model.action_io
    hooks = [
        io.velocity_encoder[0].register_forward_pre_hook(lambda m, a: seen.__setitem__("speed", a[0].detach().clone())),
        io.target_point_encoder.mlp[0].register_forward_pre_hook(
            lambda m, a: seen.__setitem__("tp", a[0].detach().clone())
        ),
    ]
    with torch.no_grad():
        model.action_io.embed(target_points, speed, torch.zeros(1, 4, 368), model.dtype)
    for h in hooks:
        h.remove()
    return seen


@pytest.mark.parametrize("cast", [False, True])
def test_speed_and_target_points_are_rounded_to_bf16_first(model, cast):
    tp, speed = torch.tensor([[[12.3456, -3.3]], [[30.01, 0.0]]]).reshape(1, 2, 2), torch.tensor([[23.4567]])
    raw = _first_linear_inputs(model, tp, speed)
    assert float(raw["speed"].flatten()[0]) == pytest.approx(23.4567, abs=1e-5)  # fp32 model: no rounding
    apply_released_numerics(model, cast_weights=cast)
    got = _first_linear_inputs(model, tp, speed)
    assert float(got["speed"].flatten()[0]) == 23.5  # bf16 has 8 significant bits: 23.4567 -> 23.5
    assert float(got["tp"][0, 0, 0]) == 12.375 and float(got["tp"][0, 1, 0]) == 30.0
    assert (got["speed"].dtype == torch.bfloat16) == cast


def test_post_attention_norm_output_is_bf16_in_gen_mode(model):
    obs, state = make_dummy_inputs(model.config, batch=1, seed=1)
    seen = []
    model.action_layers[1].mlp.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().clone()))
    snap = model.prefill(obs)
    model.act(snap, state)
    assert not torch.equal(seen[-1], seen[-1].bfloat16().float())
    apply_released_numerics(model, cast_weights=False)
    apply_released_numerics(model, cast_weights=False)  # idempotent: hooks are not stacked
    assert len(model._released_numerics_hooks) == 2 + model.config.num_layers
    model.act(snap, state)
    assert seen[-1].dtype == torch.float32 and torch.equal(seen[-1], seen[-1].bfloat16().float())
    remove_released_numerics(model)
    model.act(snap, state)
    assert not torch.equal(seen[-1], seen[-1].bfloat16().float())


def test_rotary_frequencies_stay_fp32(model):
    fp32 = model.understanding.inv_freq.clone()
    built = build_model(tiny_released_config(), seed=0, dtype="bf16")  # the factory keeps RoPE frequencies fp32
    assert built.understanding.inv_freq.dtype == torch.float32 and torch.equal(built.understanding.inv_freq, fp32)
    plain = build_model(tiny_released_config(), seed=0).to(torch.bfloat16)  # what a plain .to(bf16) does
    assert plain.understanding.inv_freq.dtype == torch.bfloat16
    apply_released_numerics(model)
    assert model.action_layers[0].self_attn.q_proj.weight.dtype == torch.bfloat16
    assert model.understanding.inv_freq.dtype == torch.float32 and torch.equal(model.understanding.inv_freq, fp32)
    restored = keep_rotary_fp32(plain)
    assert "understanding.vlm.model.language_model.rotary_emb.inv_freq" in restored
    assert torch.equal(plain.understanding.inv_freq, fp32)


def test_bf16_inv_freq_would_shift_rope_angles_at_released_positions():
    # Released prefix ~625 tokens: angles p * inv_freq with bf16-rounded inv_freq drift by up to ~1 rad.
    j = torch.arange(64, dtype=torch.float32)
    inv = 1.0 / (5e6 ** (2 * j / 128))
    pos = torch.arange(600, 730)[None, None].expand(3, 1, -1)
    axis = torch.zeros(3, 64, dtype=torch.long)
    axis[0] = 1
    cos32, _ = mrope_cos_sin(pos, inv, axis, torch.float32)
    cos16, _ = mrope_cos_sin(pos, inv.bfloat16().float(), axis, torch.float32)
    assert float((cos32 - cos16).abs().max()) > 0.5
    assert math.isclose(float(inv[0]), 1.0)
