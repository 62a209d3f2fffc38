"""Fast step without the prefix/action K/V concatenation (issue #14 part 3): same numbers as the concat reference."""

from __future__ import annotations

import pytest
import torch

from automot.model import build_model, make_dummy_inputs, mot


@pytest.mark.parametrize("batch", [1, 2])  # batch 2: left-padded prefixes, so masked prefix slots
def test_two_part_attention_matches_the_concatenation(batch, monkeypatch):
    model = build_model("tiny")
    obs, state = make_dummy_inputs(model.config, batch=batch, seed=3)
    with torch.inference_mode():
        snap = model.prefill(obs, capacity=model.config.max_prefix_tokens)
        step = model.fast_step_module()
        args = (
            snap.keys,
            snap.values,
            snap.pad_mask,
            snap.next_position,
            state.target_points,
            state.speed,
            state.scene,
        )
        monkeypatch.setattr(mot, "SPLIT_PREFIX_ATTENTION", True)
        split = step(*args)
        monkeypatch.setattr(mot, "SPLIT_PREFIX_ATTENTION", False)
        concat = step(*args)
    for a, b in zip(split, concat):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_two_part_attention_is_the_softmax_over_the_union():
    torch.manual_seed(0)
    joint = mot.HeadLayout(num_heads=4, num_kv_heads=2, head_dim=8)
    q = torch.randn(1, 4, 3, 8)
    kp, vp = torch.randn(1, 2, 10, 8), torch.randn(1, 2, 10, 8)
    ko, vo = torch.randn(1, 2, 3, 8), torch.randn(1, 2, 3, 8)
    mask = torch.ones(1, 3, 13, dtype=torch.bool)
    mask[:, :, :4] = False  # padded prefix slots
    mask[:, 0, 11:] = False  # causal among the own tokens
    mask[:, 1, 12:] = False
    out = mot._two_part_attention(q, kp, vp, ko, vo, mask, joint)
    ref = mot._grouped_attention(q, torch.cat([kp, ko], 2), torch.cat([vp, vo], 2), mask, joint)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_two_part_form_exports_to_onnx_with_parity(tmp_path, monkeypatch):
    from automot.runtime.engines import OnnxRuntimeEngine
    from automot.runtime.export import export_onnx, validate_parity

    monkeypatch.setattr(mot, "SPLIT_PREFIX_ATTENTION", True)
    model = build_model("tiny")
    cap = model.config.max_prefix_tokens
    engine = OnnxRuntimeEngine(export_onnx(model, tmp_path / "fast_step.onnx", cap), threads=1)
    assert validate_parity(model, engine, cap)["max_abs"] <= 1e-4
