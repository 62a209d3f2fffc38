"""Core MoT contract: forward == prefill + act, snapshot immutability, prefix independence, determinism."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from automot.model import KVSnapshot, make_dummy_inputs

ATOL = 1e-5


def _max_diff(a, b) -> float:
    return float((a - b).abs().max())


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("fixture", ["tiny_model", "tiny_scene_model"])
def test_forward_equals_prefill_then_act(request, fixture, batch):
    model = request.getfixturevalue(fixture)
    obs, state = make_dummy_inputs(model.config, batch=batch, seed=batch)
    with torch.no_grad():
        joint = model(obs, state)
    split = model.act(model.prefill(obs), state)
    assert joint.path.shape == (batch, 20, 2)
    assert joint.waypoints.shape == (batch, 6, 2)
    assert joint.decision_logits.shape == (batch, 8, model.config.vocab_size)
    assert _max_diff(joint.path, split.path) <= ATOL
    assert _max_diff(joint.waypoints, split.waypoints) <= ATOL
    assert _max_diff(joint.decision_logits, split.decision_logits) <= ATOL
    assert joint.decision_text == split.decision_text


def test_padded_snapshot_gives_same_actions(tiny_model):
    obs, state = make_dummy_inputs(tiny_model.config, batch=2, seed=5)
    snap = tiny_model.prefill(obs)
    padded = tiny_model.prefill(obs, capacity=snap.length + 37)
    assert padded.length == snap.length + 37
    assert not bool(padded.pad_mask[:, snap.length :].any())
    a, b = tiny_model.act(snap, state), tiny_model.act(padded, state)
    assert _max_diff(a.path, b.path) <= ATOL
    assert _max_diff(a.waypoints, b.waypoints) <= ATOL
    assert _max_diff(a.decision_logits, b.decision_logits) <= ATOL
    with pytest.raises(ValueError, match="capacity"):
        snap.padded(snap.length - 1)


def test_act_is_repeatable_and_never_mutates_snapshot(tiny_model):
    obs, state = make_dummy_inputs(tiny_model.config, batch=2, seed=7)
    snap = tiny_model.prefill(obs, capacity=128)
    before = {k: v.clone() for k, v in vars(snap).items() if isinstance(v, torch.Tensor)}
    first = tiny_model.act(snap, state)
    second = tiny_model.act(snap, state)
    assert torch.equal(first.path, second.path)
    assert torch.equal(first.waypoints, second.waypoints)
    assert torch.equal(first.decision_logits, second.decision_logits)
    for name, tensor in before.items():
        assert torch.equal(getattr(snap, name), tensor), f"act() modified snapshot.{name}"


def test_prefix_kv_do_not_depend_on_action_tokens(tiny_scene_model):
    model = tiny_scene_model
    obs, state_a = make_dummy_inputs(model.config, batch=2, seed=11)
    _, state_b = make_dummy_inputs(model.config, batch=2, seed=12)
    assert not torch.equal(state_a.target_points, state_b.target_points)
    with torch.no_grad():
        out_a, snap_a = model(obs, state_a, return_snapshot=True)
        out_b, snap_b = model(obs, state_b, return_snapshot=True)
    ref = model.prefill(obs)
    assert not torch.allclose(out_a.path, out_b.path)  # the action inputs do matter for the actions...
    valid = ref.pad_mask
    for snap in (snap_a, snap_b):  # ...but never for the prefix K/V
        dk = (snap.keys - ref.keys).abs().amax(dim=(0, 2, 4))[valid]
        dv = (snap.values - ref.values).abs().amax(dim=(0, 2, 4))[valid]
        assert float(dk.max()) <= ATOL and float(dv.max()) <= ATOL


def test_snapshot_is_plain_tensors(tiny_model):
    obs, _ = make_dummy_inputs(tiny_model.config, batch=1, seed=3)
    snap = tiny_model.prefill(obs)
    assert isinstance(snap, KVSnapshot)
    cfg = tiny_model.config
    assert snap.keys.shape == (cfg.num_layers, 1, cfg.num_kv_heads, snap.length, cfg.head_dim)
    assert snap.values.shape == snap.keys.shape
    assert snap.pad_mask.dtype == torch.bool
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.keys = snap.keys  # type: ignore[misc]


def test_action_inputs_change_the_plan(tiny_model):
    obs, state = make_dummy_inputs(tiny_model.config, batch=1, seed=2)
    snap = tiny_model.prefill(obs)
    base = tiny_model.act(snap, state)
    state.speed = state.speed + 5.0
    moved = tiny_model.act(snap, state)
    assert not torch.allclose(base.waypoints, moved.waypoints)


def test_forward_is_differentiable(tiny_model):
    obs, state = make_dummy_inputs(tiny_model.config, batch=1, seed=4)
    tiny_model.zero_grad()
    out = tiny_model(obs, state)
    (out.path.sum() + out.waypoints.sum() + out.decision_logits.logsumexp(-1).sum()).backward()
    grads = {n: p.grad for n, p in tiny_model.named_parameters()}
    assert float(grads["action_layers.0.self_attn.q_proj.weight"].abs().sum()) > 0
    # The action expert reads the prefix K/V, so the loss also reaches the understanding expert's key projection.
    assert float(grads["understanding.vlm.model.language_model.layers.0.self_attn.k_proj.weight"].abs().sum()) > 0
    tiny_model.zero_grad()
