"""Numerical parity of released quirks at tiny size (UE 8q/2kv x 32, AE 4q/1kv x 16: GQA group 4 on both)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from automot.model import build_model
from automot.model.masks import joint_action_rows
from automot.model.mot import mot_layer
from automot.model.prompting import builtin_tokenizer, make_image_processor
from automot.model.released.prompt import build_released_observation, first_span, released_decision_text
from automot.model.released.synthetic import tiny_released_config
from automot.model.rope import mrope_cos_sin
from automot.model.types import ActionState


@pytest.fixture(scope="module")
def model():
    cfg = tiny_released_config()
    m = build_model(cfg, seed=4)
    m.tokenizer, m.image_processor = builtin_tokenizer(), make_image_processor(cfg)
    return m


@pytest.fixture(scope="module")
def obs(model):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (512, 1024, 3), dtype=np.uint8) for _ in range(4)]
    return build_released_observation(model, frames, np.array([[12.5, -3.25], [30.0, 4.125]]), 7.346)


def _state(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    return ActionState(
        torch.randn(1, 2, 2, generator=g) * 10, torch.tensor([[6.5]]), torch.randn(1, 4, 368, generator=g)
    )


def test_released_prompt_tokens(model, obs):
    tok = model.tokenizer
    ids = obs.input_ids[0].tolist()
    text = tok.decode(ids)
    assert text.startswith(
        "<|im_start|>system\nYou are a mature and professional driver.<|im_end|>\n<|im_start|>user\n<|vision_start|>"
    )
    assert text.endswith("for the next 3 seconds.<|im_end|>")  # no newline, no assistant header
    assert ids.count(3) == 4 and ids.count(4) == 4 and ids.count(5) == 4 * 8  # 128x64 frames -> 4x2 tokens
    core = model.build_observation(
        [np.zeros((512, 1024, 3), np.uint8)] * 4, np.array([[12.5, -3.25], [30.0, 4.125]]), 7.346
    )
    assert core.input_ids.shape[1] == len(ids) + 1  # model/prompting.py appends "\n" after the last <|im_end|>


def test_prefill_mask_on_released_pattern(model, obs):
    ids = obs.input_ids[0].tolist()
    pre = model.understanding.embed_prefix(obs)
    mask = model._prefix_mask(obs, pre)[0]
    # Released splits: [header: causal] [vs + pads + ve: full] x 4 [instruction + <|im_end|>: causal]
    starts = [i for i, t in enumerate(ids) if t == 3]
    bounds = [0, *starts, ids.index(4, starts[-1]) + 1, len(ids)]
    modes = ["causal"] + ["full"] * 4 + ["causal"]
    ref = torch.zeros(len(ids), len(ids), dtype=torch.bool)
    for (a, b), mode in zip(zip(bounds[:-1], bounds[1:]), modes):
        ref[a:b, :a] = True
        ref[a:b, a:b] = torch.ones(b - a, b - a).tril().bool() if mode == "causal" else True
    assert torch.equal(mask, ref)


def test_action_positions_follow_the_prefix_on_all_axes(model, obs):
    pre = model.understanding.embed_prefix(obs)
    snap = model.prefill(obs)
    p = int(pre.position_ids.max()) + 1
    assert p < obs.input_ids.shape[1]  # image tokens share positions, so P is below the token count
    assert int(snap.next_position[0]) == p
    pos = model._action_positions(snap.next_position)
    n = model.config.num_action_tokens
    assert pos.shape == (3, 1, n) and torch.equal(pos, (p + torch.arange(n))[None, None].expand(3, 1, n))


def test_route_and_waypoints_are_cumsums_of_head_deltas(model, obs):
    out = model.act(model.prefill(obs), _state(model))
    t = model.config.tokens
    assert t.route_cumsum == "xy"
    r0 = t.num_scene_tokens + 3 + t.num_decision_tokens
    h = out.hidden[0]
    route = model.action_io.route_head.mlp(h[r0 : r0 + 20]).detach()
    wps = model.action_io.waypoints_head.mlp(h[r0 + 20 : r0 + 26]).detach()
    # Released route head: the cumsum runs over (x, y) of each point, point i = (a_i, a_i + b_i).
    assert torch.allclose(out.path[0], route.cumsum(-1), atol=1e-6)
    assert torch.allclose(out.path[0, :, 1] - out.path[0, :, 0], route[:, 1], atol=1e-6)
    assert torch.allclose(out.waypoints[0], wps.cumsum(0), atol=1e-6)
    assert torch.allclose(out.waypoints[0, 1] - out.waypoints[0, 0], wps[1], atol=1e-6)


def test_decision_decoding_keeps_first_span_with_special_tokens(model):
    tok = model.tokenizer
    stop, comma = tok.encode("stop", add_special_tokens=False), tok.convert_tokens_to_ids(",")
    assert first_span([9, 1, 30, 31, 2, 1, 7, 2], 1, 2) == [1, 30, 31, 2]
    assert first_span([9, 1, 30, 1, 31, 2], 1, 2) == [1, 30]  # a second <|im_start|> closes the span
    assert first_span([9, 30, 2, 31], 1, 2) == [9, 30, 2, 31]  # no <|im_start|>: everything
    logits = torch.full((2, 8, model.config.vocab_size), -5.0)
    rows = [[comma, 1, *stop, comma, *stop, 2], [*stop, comma, *stop, comma, *stop]]
    for row, ids in enumerate(rows):
        assert len(ids) == 8
        logits[row, torch.arange(8), torch.tensor(ids)] = 5.0
    texts = released_decision_text(model, logits)
    assert texts[0] == "<|im_start|>stop,stop<|im_end|>"  # span only, special tokens kept
    assert texts[1] == "stop,stop,stop"


def test_gqa_group4_head_mapping_against_reference(model, fp64_reference):
    ue, ae = model.layouts
    assert (ue.num_heads, ue.num_kv_heads, ue.head_dim, ae.num_heads, ae.num_kv_heads, ae.head_dim) == (
        8,
        2,
        32,
        4,
        1,
        16,
    )
    torch.manual_seed(0)
    s, n = 7, model.config.num_action_tokens
    x = torch.randn(1, n, 128)
    past_k, past_v = torch.randn(1, 2, s, 32), torch.randn(1, 2, s, 32)
    pos = (40 + torch.arange(n))[None, None].expand(3, 1, n)
    cos, sin = mrope_cos_sin(pos, model.understanding.inv_freq, model.understanding.rope_axis_map, torch.float32)
    mask = joint_action_rows(torch.ones(1, s, dtype=torch.bool), model.action_groups)
    experts = [model.understanding.layers[0], model.action_layers[0]]

    def run(k, v):
        with torch.no_grad():
            return mot_layer(experts, model.layouts, [None, x], [None, (cos, sin)], mask, (k, v))[0][1]

    ours = run(past_k, past_v)
    weights = dict(model.action_layers[0].named_parameters())
    ref = fp64_reference.action_layer(
        weights, x[0], past_k[0], past_v[0], cos[0], sin[0], mask[0], head_dim=16, group=4
    )
    assert float((ours[0].double() - ref).abs().max()) < 1e-4
    unread = past_v.clone()
    unread[:, 1] += 5.0  # UE KV head 1 is read only by UE query heads 4..7, never by the 4 action heads
    assert torch.equal(ours, run(past_k, unread))
    read = past_v.clone()
    read[:, 0] += 5.0  # all 4 action heads map to KV head 0 (h // 4)
    assert not torch.allclose(ours, run(past_k, read))
