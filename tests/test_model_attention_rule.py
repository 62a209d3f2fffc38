"""The joint-attention rule for differing head layouts, checked against a per-head fp64 reference.

Rule (model/mot.py, automot-checkpoint-spec.md §2.2-2.4): AE q/k zero-padded to the UE head_dim, RoPE over the
full padded width with the UE's cos/sin, AE key tail zeroed after RoPE, AE query tail kept, query head h reads
KV head h // g, softmax scale 1/sqrt(D_ue).
"""

from __future__ import annotations

import math

import torch

from automot.model.masks import joint_action_rows
from automot.model.mot import HeadLayout, mot_layer
from automot.model.rope import mrope_cos_sin, rotate_half


def _rms(x, w, eps=1e-6):
    return w * (x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps))


def _reference_action_layer(layer, x, past_k, past_v, cos, sin, mask, ue: HeadLayout, ae: HeadLayout):
    """Loop-per-head fp64 reimplementation of one action-only layer call."""
    x = x.double()
    w = {n: p.detach().double() for n, p in layer.named_parameters()}
    b, n, _ = x.shape
    d, big_d, g = ae.head_dim, ue.head_dim, ue.group
    xn = _rms(x, w["input_layernorm.weight"])
    q = (xn @ w["self_attn.q_proj.weight"].T).view(b, n, ae.num_heads, d)
    k = (xn @ w["self_attn.k_proj.weight"].T).view(b, n, ae.num_kv_heads, d)
    v = (xn @ w["self_attn.v_proj.weight"].T).view(b, n, ae.num_kv_heads, d)
    q = _rms(q, w["self_attn.q_norm.weight"])
    k = _rms(k, w["self_attn.k_norm.weight"])
    cos, sin = cos.double(), sin.double()
    out = torch.zeros(b, n, ae.num_heads, d, dtype=torch.float64)
    for bi in range(b):
        for h in range(ae.num_heads):
            kv = h // g
            qp = torch.zeros(n, big_d, dtype=torch.float64)
            qp[:, :d] = q[bi, :, h]
            qp = qp * cos[bi] + rotate_half(qp) * sin[bi]  # query tail kept
            kp = torch.zeros(n, big_d, dtype=torch.float64)
            kp[:, :d] = k[bi, :, kv]
            kp = kp * cos[bi] + rotate_half(kp) * sin[bi]
            kp[:, d:] = 0.0  # key tail zeroed
            vp = torch.zeros(n, big_d, dtype=torch.float64)
            vp[:, :d] = v[bi, :, kv]
            keys = torch.cat([past_k[bi, kv].double(), kp])
            vals = torch.cat([past_v[bi, kv].double(), vp])
            scores = qp @ keys.T / math.sqrt(big_d)
            scores = scores.masked_fill(~mask[bi], float("-inf"))
            out[bi, :, h] = (scores.softmax(-1) @ vals)[:, :d]
    h1 = x + out.reshape(b, n, -1) @ w["self_attn.o_proj.weight"].T
    hn = _rms(h1, w["post_attention_layernorm.weight"])
    mlp = (torch.nn.functional.silu(hn @ w["mlp.gate_proj.weight"].T) * (hn @ w["mlp.up_proj.weight"].T)) @ w[
        "mlp.down_proj.weight"
    ].T
    return h1 + mlp


def test_action_layer_matches_per_head_reference(tiny_model):
    torch.manual_seed(0)
    model = tiny_model
    ue, ae = model.layouts
    assert ae.head_dim < ue.head_dim and ae.num_heads < ue.num_heads  # the tiny preset exercises padding
    b, s, n = 2, 9, model.action_groups.shape[0]
    x = torch.randn(b, n, model.config.action.hidden_size)
    past_k = torch.randn(b, ue.num_kv_heads, s, ue.head_dim)
    past_v = torch.randn(b, ue.num_kv_heads, s, ue.head_dim)
    valid = torch.ones(b, s, dtype=torch.bool)
    valid[1, :3] = False
    pos = (torch.tensor([20, 17])[:, None] + torch.arange(n))[None].expand(3, -1, -1)
    cos, sin = mrope_cos_sin(pos, model.understanding.inv_freq, model.understanding.rope_axis_map, torch.float32)
    mask = joint_action_rows(valid, model.action_groups)
    experts = [model.understanding.layers[0], model.action_layers[0]]
    with torch.no_grad():
        (_, ours), _ = mot_layer(experts, model.layouts, [None, x], [None, (cos, sin)], mask, (past_k, past_v))
    ref = _reference_action_layer(model.action_layers[0], x, past_k, past_v, cos, sin, mask, ue, ae)
    assert float((ours.double() - ref).abs().max()) < 1e-4


def test_query_tail_reads_prefix_key_tail(tiny_model):
    """The kept query tail meets the UE keys' dims beyond the AE head_dim: changing them changes the output."""
    torch.manual_seed(1)
    model = tiny_model
    ue, ae = model.layouts
    b, s, n = 1, 6, model.action_groups.shape[0]
    x = torch.randn(b, n, model.config.action.hidden_size)
    past_k = torch.randn(b, ue.num_kv_heads, s, ue.head_dim)
    past_v = torch.randn(b, ue.num_kv_heads, s, ue.head_dim)
    pos = (torch.tensor([30])[:, None] + torch.arange(n))[None].expand(3, -1, -1)
    rope = mrope_cos_sin(pos, model.understanding.inv_freq, model.understanding.rope_axis_map, torch.float32)
    mask = joint_action_rows(torch.ones(b, s, dtype=torch.bool), model.action_groups)
    experts = [model.understanding.layers[0], model.action_layers[0]]

    def run(k):
        with torch.no_grad():
            return mot_layer(experts, model.layouts, [None, x], [None, rope], mask, (k, past_v))[0][1]

    tail_changed = past_k.clone()
    tail_changed[..., ae.head_dim :] += 3.0
    unread_head = past_k.clone()
    unread_head[:, ae.num_kv_heads :] += 3.0  # KV heads >= h_ae/g are never read by the action expert
    base = run(past_k)
    assert not torch.allclose(base, run(tail_changed))
    assert torch.allclose(base, run(unread_head))
