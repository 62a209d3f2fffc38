"""Our prefix-only pass reproduces Hugging Face's own forward (hidden states and per-layer K/V)."""

from __future__ import annotations

import pytest
import torch

from automot.model import build_model, get_config, make_dummy_inputs


def _qwen25_tiny():
    cfg = get_config("tiny")
    cfg.name = "tiny-qwen2.5"
    cfg.understanding.family = "qwen2_5_vl"
    cfg.understanding.text = dict(
        vocab_size=384, hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=4096, rms_norm_eps=1e-6, tie_word_embeddings=True,
        bos_token_id=1, eos_token_id=2, pad_token_id=0,
        rope_parameters=dict(rope_type="default", rope_theta=10000.0, mrope_section=[2, 2, 2]),
    )  # fmt: skip
    cfg.understanding.vision = dict(
        depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=48, patch_size=14,
        spatial_merge_size=2, temporal_patch_size=2, window_size=56, fullatt_block_indexes=[0],
    )  # fmt: skip
    cfg.prompt.image_width, cfg.prompt.image_height = 56, 28
    return build_model(cfg)


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen2_5_vl"])
def test_prefix_pass_matches_hf_forward(tiny_model, family):
    model = tiny_model if family == "qwen3_vl" else _qwen25_tiny()
    obs, _ = make_dummy_inputs(model.config, batch=2, seed=21)
    assert bool((obs.attention_mask == 0).any()), "want left padding in the batch"
    with torch.no_grad():
        snap, hidden = model._run_prefix(obs)
        ref = model.understanding.vlm.model(
            input_ids=obs.input_ids,
            attention_mask=obs.attention_mask,
            pixel_values=obs.pixel_values,
            image_grid_thw=obs.image_grid_thw,
            mm_token_type_ids=obs.mm_token_type_ids,
            use_cache=True,
        )
        ours = model.understanding.norm(hidden)
    valid = obs.attention_mask.bool()
    assert float((ours - ref.last_hidden_state)[valid].abs().max()) <= 1e-5
    assert len(ref.cache.layers) == model.config.num_layers
    for i, layer in enumerate(ref.cache.layers):
        dk = (snap.keys[i] - layer.keys).abs().amax(dim=(1, 3))[valid]
        dv = (snap.values[i] - layer.values).abs().amax(dim=(1, 3))[valid]
        assert float(dk.max()) <= 1e-5 and float(dv.max()) <= 1e-5, f"layer {i}"


def test_deepstack_features_are_injected(tiny_model):
    """Dropping deepstack changes the prefix (so the parity above really covers the injection)."""
    obs, _ = make_dummy_inputs(tiny_model.config, batch=1, seed=3)
    with torch.no_grad():
        pre = tiny_model.understanding.embed_prefix(obs)
        assert pre.deepstack is not None and len(pre.deepstack) == 2
        full = tiny_model.prefill(obs)
        original = tiny_model.understanding.embed_prefix
        try:

            def no_deepstack(o):
                p = original(o)
                p.deepstack = None
                return p

            tiny_model.understanding.embed_prefix = no_deepstack
            without = tiny_model.prefill(obs)
        finally:
            tiny_model.understanding.embed_prefix = original
    assert torch.equal(full.keys[0], without.keys[0])  # layer 0 K/V are computed before the first injection
    assert not torch.allclose(full.keys[1], without.keys[1])


def test_next_position_follows_multimodal_positions(tiny_model):
    obs, _ = make_dummy_inputs(tiny_model.config, batch=2, seed=8)
    with torch.no_grad():
        pre = tiny_model.understanding.embed_prefix(obs)
        _, deltas = tiny_model.understanding.vlm.model.get_rope_index(
            obs.input_ids, mm_token_type_ids=obs.mm_token_type_ids, image_grid_thw=obs.image_grid_thw,
            attention_mask=obs.attention_mask,
        )  # fmt: skip
    snap = tiny_model.prefill(obs)
    n_valid = obs.attention_mask.sum(-1)
    # HF: rope delta = max position + 1 - number of tokens
    assert torch.equal(snap.next_position, n_valid + deltas[:, 0])
    assert int(pre.position_ids.max()) + 1 == int(snap.next_position.max())
