"""The joint-attention rule for differing head layouts, checked against the per-head fp64 reference
(tests/doubles/fp64_reference.py, the ``fp64_reference`` fixture).

Rule (model/mot.py, docs/released-checkpoint.md §2.2-2.4): AE q/k zero-padded to the UE head_dim, RoPE over the
full padded width with the UE's cos/sin, AE key tail zeroed after RoPE, AE query tail kept, query head h reads
KV head h // g, softmax scale 1/sqrt(D_ue).
"""

from __future__ import annotations

import torch

from automot.model.masks import joint_action_rows
from automot.model.mot import mot_layer
from automot.model.rope import mrope_cos_sin


def test_action_layer_matches_per_head_reference(tiny_model, fp64_reference):
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
    weights = dict(model.action_layers[0].named_parameters())
    ref = torch.stack(
        [
            fp64_reference.action_layer(
                weights, x[i], past_k[i], past_v[i], cos[i], sin[i], mask[i], head_dim=ae.head_dim, group=ue.group
            )
            for i in range(b)
        ]
    )
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
