"""A refiner attached to the model is applied in act / fast_step (and therefore in exported engines)."""

from __future__ import annotations

import torch

from automot.model import build_model, load_pretrained, make_dummy_inputs, save_pretrained
from automot.model.refiner import ActionRefiner, RefinerConfig, save_refiner


def _refiner(model, seed=0, identity=True):
    torch.manual_seed(seed)
    ref = ActionRefiner(RefinerConfig(cond_dim=model.config.action.hidden_size, d_model=16, num_heads=2))
    if not identity:
        with torch.no_grad():
            for p in ref.parameters():
                p.add_(torch.randn_like(p) * 0.05)
    return ref


def test_attached_refiner_changes_act_and_fast_step():
    model = build_model("tiny", seed=3)
    obs, state = make_dummy_inputs(model.config, batch=2, seed=1)
    snap = model.prefill(obs)
    base = model.act(snap, state)
    model.attach_refiner(_refiner(model))  # zero-initialised output layer: the identity
    same = model.act(snap, state)
    assert torch.allclose(base.path, same.path, atol=1e-6)
    model.attach_refiner(_refiner(model, identity=False))
    refined = model.act(snap, state)
    fast = model.fast_step(snap.keys, snap.values, snap.pad_mask, snap.next_position, state.target_points, state.speed)
    assert not torch.allclose(base.waypoints, refined.waypoints)
    assert torch.allclose(fast[1], refined.waypoints, atol=1e-6)
    assert torch.equal(base.decision_logits, refined.decision_logits)  # the refiner leaves the decision alone
    assert "refiner" not in "".join(model.state_dict())  # not part of the AutoMoT weights
    model.attach_refiner(None)
    assert torch.allclose(model.act(snap, state).path, base.path)


def test_load_pretrained_with_refiner(tmp_path):
    model = build_model("tiny", seed=4)
    ref = _refiner(model, identity=False)
    save_pretrained(model, tmp_path)
    save_refiner(ref, tmp_path)
    obs, state = make_dummy_inputs(model.config, batch=1, seed=2)
    plain = load_pretrained(tmp_path)
    with_ref = load_pretrained(tmp_path, refiner=True)
    model.attach_refiner(ref)
    a = with_ref.act(with_ref.prefill(obs), state)
    b = model.act(model.prefill(obs), state)
    c = plain.act(plain.prefill(obs), state)
    assert torch.allclose(a.waypoints, b.waypoints, atol=1e-6)
    assert not torch.allclose(a.waypoints, c.waypoints)


def test_onnx_export_includes_the_refiner(tmp_path):
    from automot.runtime.export import export

    model = build_model("tiny", seed=5)
    model.attach_refiner(_refiner(model, identity=False))
    summary = export(model, "onnx", tmp_path, source="test-refiner")
    assert summary["passed"] and summary["max_abs"] <= 1e-4
