"""Semantic prompting: chat template, image tokens, observation building and reasoning generation."""

from __future__ import annotations

import numpy as np
import torch

from automot.model.prompting import builtin_tokenizer, collate_observations


def _frames(model, n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (96, 160, 3), dtype=np.uint8) for _ in range(n)]


def test_builtin_tokenizer_is_offline_and_stable():
    tok = builtin_tokenizer()
    text = "stop, accelerate, stop"
    assert tok.decode(tok(text)["input_ids"]) == text
    assert tok.convert_tokens_to_ids("<|image_pad|>") == 5


def test_build_observation_layout(tiny_model):
    cfg = tiny_model.config
    tp = np.array([[12.5, -3.25], [30.0, 4.125]])
    obs = tiny_model.build_observation(_frames(tiny_model, cfg.prompt.num_frames), tp, 7.346)
    ids = obs.input_ids[0].tolist()
    n_img = cfg.prompt.num_frames
    per_image = int(obs.image_grid_thw[0].prod()) // 4
    assert ids.count(5) == n_img * per_image
    assert ids.count(3) == n_img and ids.count(4) == n_img
    text = tiny_model.tokenizer.decode(ids)
    assert text.startswith("<|im_start|>system\nYou are a mature and professional driver.<|im_end|>")
    assert "(12.500000, -3.250000), (30.000000, 4.125000)" in text and "7.35 m/s" in text
    assert text.index("<|vision_start|>") < text.index("Your current")  # images first
    assert text.rstrip().endswith("<|im_end|>")  # released prompt: no assistant header
    assert torch.equal(obs.mm_token_type_ids[0], (obs.input_ids[0] == 5).long())
    snap = tiny_model.prefill(obs)
    out = tiny_model.act(snap, tiny_model.build_state(tp, 7.346))
    assert out.path.shape == (1, 20, 2) and isinstance(out.decision_text[0], str)


def test_collated_batch_matches_single(tiny_model):
    cfg = tiny_model.config
    tp = np.array([[5.0, 0.0], [10.0, 1.0]])
    a = tiny_model.build_observation(_frames(tiny_model, cfg.prompt.num_frames, 1), tp, 1.0)
    b = tiny_model.build_observation(_frames(tiny_model, cfg.prompt.num_frames, 2), tp, 12.25)
    batch = collate_observations([a, b], pad_id=0)
    state = tiny_model.build_state(tp, 3.0)
    state2 = type(state)(state.target_points.repeat(2, 1, 1), state.speed.repeat(2, 1))
    both = tiny_model.act(tiny_model.prefill(batch), state2)
    single = tiny_model.act(tiny_model.prefill(b), state)
    assert float((both.path[1] - single.path[0]).abs().max()) < 1e-5


def test_reason_extends_the_snapshot(tiny_model):
    cfg = tiny_model.config
    tp = np.array([[5.0, 0.0], [10.0, 1.0]])
    obs = tiny_model.build_observation(_frames(tiny_model, cfg.prompt.num_frames, 3), tp, 2.0)
    base = tiny_model.prefill(obs)
    snap = tiny_model.reason(obs, max_new_tokens=4)
    assert isinstance(snap.reasoning_text, list) and len(snap.reasoning_text) == 1
    added = snap.length - base.length
    assert 1 <= added <= 4
    assert int(snap.next_position[0]) == int(base.next_position[0]) + int(snap.pad_mask[0, base.length :].sum())
    assert torch.equal(snap.keys[:, :, :, : base.length], base.keys)  # prefix unchanged, tokens appended
    out = tiny_model.act(snap, tiny_model.build_state(tp, 2.0))
    assert torch.isfinite(out.path).all()


def test_released_prompt_style_matches_released_builder(tiny_model):
    """With end_with_newline=False the core builder gives exactly the released token sequence."""
    import dataclasses

    from automot.model.released.prompt import build_released_observation

    cfg = tiny_model.config
    old = cfg.prompt
    cfg.prompt = dataclasses.replace(old, end_with_newline=False)
    try:
        tp = np.array([[4.0, -1.5], [9.0, 0.25]])
        frames = _frames(tiny_model, cfg.prompt.num_frames, 4)
        ours = tiny_model.build_observation(frames, tp, 3.21)
        released = build_released_observation(tiny_model, frames, tp, 3.21)
    finally:
        cfg.prompt = old
    assert ours.input_ids[0, -1].item() == 2  # ends on <|im_end|>
    assert torch.equal(ours.input_ids, released.input_ids)
    assert torch.equal(ours.pixel_values, released.pixel_values)


def test_prompt_numbers_are_float32_like_the_released_agent(tiny_model):
    builder = tiny_model.prompt_builder()
    text = builder.user_text(np.array([[123.456789, -0.5], [20.0, 1.0]]), 0.615)
    # float64 would print 123.456789 and 0.61; float32(123.456789) = 123.4567871..., float32(0.615) = 0.6150000095
    assert "(123.456787, -0.500000)" in text and "0.62 m/s" in text


def test_build_state_copies_its_inputs_into_batch_one_float_tensors():
    """The fast path builds the action state every tick from the agent's arrays: shapes [1, 2, 2] / [1, 1] /
    [1, N, D] in float32, and a later change to the caller's arrays does not reach a state already built."""
    from automot.model.prompting import build_state

    tp = np.array([[8.0, 0.5], [20.0, 2.0]], np.float32)
    scene = np.ones((3, 4), np.float64)
    state = build_state(tp, 4, scene)
    assert state.target_points.shape == (1, 2, 2) and state.speed.shape == (1, 1) and state.scene.shape == (1, 3, 4)
    assert {state.target_points.dtype, state.speed.dtype, state.scene.dtype} == {torch.float32}
    assert float(state.speed) == 4.0 and float(state.target_points[0, 1, 0]) == 20.0
    tp[1, 0] = -1.0
    scene[:] = 0.0
    assert float(state.target_points[0, 1, 0]) == 20.0 and float(state.scene.sum()) == 12.0
    assert build_state(tp, 1.0).scene is None
