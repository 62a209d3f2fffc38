"""Released inference numerics not covered elsewhere: a whole gen pass, the sync cadence, route decoding.

- A whole gen pass (all layers, norm_mot_gen, tied LM head, heads) against an fp64 reference written from
  docs/released-checkpoint.md §2.2-2.5, §3.4, at released ratios where the AE head_dim is above half the UE head_dim
  (20 vs 32, like 80 vs 128), with the real action groups [scene][3][8][20][6].
- The released sync cadence: prefill at the first model step (31) and on even steps; odd steps reuse the previous
  prefix, old prompt included.
- Two behaviours of the released source code (OscarHuangWind/AutoMoT @278fa5a) that this code did not reproduce at
  first (docs/released-checkpoint.md §3.1 and §3.4 state them; now covered: ``tokens.route_cumsum: xy`` and the
  runtime's ``reused_prefix_position_shifts``):
  * route decoding: ``RouteHead.forward`` is ``mlp(features).cumsum(dim=1)`` but is called on packed 2-D features
    ([20, H] in ``kv_cache_inference``, [B*20, H] in training), so the cumsum runs over (x, y) of each point,
    not over the 20 points: route_i = (a_i, a_i + b_i);
  * odd-step positions: ``kv_cache_inference`` stores ``cat([old_pos, new_pos])`` back into the cached context,
    so a fast pass that reuses a prefix places the action tokens at P + 101 .. P + 201.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from automot.model import build_model
from automot.model.config import (
    ActionExpertConfig,
    AutoMoTConfig,
    PromptConfig,
    TokenLayoutConfig,
    UnderstandingConfig,
    _builtin_ids,
    _qwen3_text,
    _qwen3_vision,
)
from automot.model.released_names import to_released_name
from automot.model.types import ActionState, KVSnapshot
from automot.runtime import build_runtime
from automot.runtime.types import DrivingObservation, DrivingState

GROUPS = (4, 3, 8, 20, 6)  # scene, 2 target points + speed, decision, route, waypoints


def _released_ratio_config() -> AutoMoTConfig:
    text = _qwen3_text(
        vocab=384, hidden=160, inter=192, layers=2, heads=8, kv=2, head_dim=32, section=[6, 5, 5], theta=5e6
    )
    return AutoMoTConfig(
        name="released-ratio",
        understanding=UnderstandingConfig(
            text=text,
            vision=_qwen3_vision(depth=2, hidden=32, inter=64, heads=2, out=160, deepstack=[0, 1]),
            token_ids=_builtin_ids(),
            prefix_image_bidirectional=True,
        ),
        # hidden 160 = 8 UE heads x 20: AE head_dim = hidden // UE heads as in the release (2560 // 32 = 80)
        action=ActionExpertConfig(hidden_size=160, num_heads=4, num_kv_heads=1, head_dim=20, intermediate_size=96),
        tokens=TokenLayoutConfig(
            num_scene_tokens=4,
            scene_dim=12,
            query_dim=24,
            encoder_widths=[16, 32],
            head_widths=[32, 16],
            route_cumsum="xy",
        ),
        prompt=PromptConfig(num_frames=1, image_width=64, image_height=32),
        max_prefix_tokens=64,
    )


def _reference(fp64, w, keys, values, p, tp, speed, scene, layers=2, hq=8, hkv=2, big_d=32, d=20):
    """fp64 gen pass from released-name weights ``w``; keys/values [L, Hkv, S, D]. Returns hidden, deltas, logits.

    ``fp64`` is the shared per-head layer reference (the ``fp64_reference`` fixture, tests/doubles/fp64_reference.py)."""

    def lin(x, name, bias=True):
        return x @ w[name + ".weight"].T + (w[name + ".bias"] if bias else 0)

    def gelu(x):
        return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))

    def mlp3(x, pre, act, last_bias=True):
        x = act(lin(x, f"{pre}.0"))
        x = act(lin(x, f"{pre}.2"))
        return lin(x, f"{pre}.4", last_bias)

    relu, silu = torch.relu, torch.nn.functional.silu

    def proj(q, pre):
        return lin(gelu(lin(w[q + ".weight"], pre + ".fc1")), pre + ".fc2")

    x = torch.cat(
        [
            lin(scene, "bev_encoder_proj"),
            mlp3(tp, "target_point_encoder.mlp", relu),
            mlp3(speed.reshape(1, 1), "velocity_encoder", relu),
            proj("reasoning_queries", "reasoning_projector"),
            proj("route_queries", "route_projector"),
            proj("waypoint_queries", "waypoint_projector"),
        ]
    )
    n, s = x.shape[0], keys.shape[2]
    inv = 1.0 / 5e6 ** (2 * torch.arange(big_d // 2, dtype=torch.float64) / big_d)
    ang = (p + torch.arange(n, dtype=torch.float64))[:, None] * inv  # P+i on all three axes
    cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()
    gid = torch.cat([torch.full((c,), i) for i, c in enumerate(GROUPS)])
    allow = torch.cat([torch.ones(n, s, dtype=torch.bool), gid[None, :] <= gid[:, None]], 1)
    for li in range(layers):
        names = fp64.layer_weight_names(f"language_model.model.layers.{li}.", "_mot_gen")
        x = fp64.action_layer(w, x, keys[li], values[li], cos, sin, allow, head_dim=d, group=hq // hkv, names=names)
    hid = fp64.rms_norm(x, w["language_model.model.norm_mot_gen.weight"])
    o = GROUPS[0] + GROUPS[1]
    logits = hid[o : o + GROUPS[2]] @ w["language_model.model.embed_tokens.weight"].T  # tied LM head
    r0 = o + GROUPS[2]
    route = mlp3(hid[r0 : r0 + GROUPS[3]], "route_head.mlp", silu, last_bias=False)
    wps = mlp3(hid[r0 + GROUPS[3] :], "waypoints_head.mlp", silu, last_bias=False)
    return hid, route, wps, logits


@pytest.fixture(scope="module")
def gen_pass(fp64_reference):
    model = build_model(_released_ratio_config(), seed=3)
    g = torch.Generator().manual_seed(0)
    s, p = 9, 41
    keys, values = torch.randn(2, 1, 2, s, 32, generator=g), torch.randn(2, 1, 2, s, 32, generator=g)
    state = ActionState(
        torch.randn(1, 2, 2, generator=g) * 10, torch.tensor([[6.7]]), torch.randn(1, 4, 12, generator=g)
    )
    snap = KVSnapshot(keys, values, torch.ones(1, s, dtype=torch.bool), torch.tensor([p]))
    with torch.no_grad():
        out = model.act(snap, state)
    w = {to_released_name(k): v.detach().double() for k, v in model.state_dict().items()}
    ref = _reference(
        fp64_reference, w, keys[:, 0].double(), values[:, 0].double(), p, state.target_points[0].double(),
        state.speed.double(), state.scene[0].double(),
    )  # fmt: skip
    return model, out, ref


def test_full_gen_pass_matches_fp64_spec_reference(gen_pass):
    model, out, (hid, _route, wps, logits) = gen_pass
    assert model.layouts[1].head_dim * 2 > model.layouts[0].head_dim  # real-real rotate-half pairs, like 80 > 64
    assert tuple(model.action_groups.bincount().tolist()) == GROUPS
    assert float((out.hidden[0].double() - hid).abs().max()) < 1e-4
    assert float((out.decision_logits[0].double() - logits).abs().max()) < 1e-4
    assert torch.equal(out.decision_logits[0].argmax(-1), logits.argmax(-1))
    assert float((out.waypoints[0].double() - wps.cumsum(0)).abs().max()) < 1e-5  # traj: cumsum over the 6 points


def test_route_decodes_like_released_route_head(gen_pass):
    _model, out, (_hid, route, _wps, _logits) = gen_pass
    released = route.cumsum(-1)  # route_i = (a_i, a_i + b_i), as kv_cache_inference and training compute it
    assert float((out.path[0].double() - released).abs().max()) < 1e-5


# ---------------------------------------------------------------- sync cadence (released agent steps 31, 32, ...)
DT = 0.05


@pytest.fixture(scope="module")
def tiny():
    return build_model("tiny", seed=0)


def _obs(model, frame: int) -> DrivingObservation:
    rng = np.random.default_rng(frame)
    p = model.config.prompt
    images = [rng.integers(0, 255, (p.image_height, p.image_width, 3), dtype=np.uint8) for _ in range(p.num_frames)]
    tp = np.array([[6.0 + frame, 0.5], [15.0, 1.0 + frame]], np.float32)
    return DrivingObservation(images, tp, 3.0 + 0.1 * frame)


def _state(frame: int) -> DrivingState:
    return DrivingState(np.array([[5.0, 0.25 * frame], [14.0, 1.0]], np.float32), 2.0 + 0.1 * frame)


def _direct(model, obs_frame: int, state_frame: int, shift: int = 0, capacity: int = 256):
    o = _obs(model, obs_frame)
    snap = model.prefill(model.build_observation(list(o.images), o.target_points, o.speed), capacity=capacity)
    snap = KVSnapshot(snap.keys, snap.values, snap.pad_mask, snap.next_position + shift)
    s = _state(state_frame)
    with torch.no_grad():
        out = model.act(snap, model.build_state(s.target_points, s.speed))
    return out.waypoints[0].numpy(), out.path[0].numpy()


def _drive(model, frames, **options):
    outs = {}
    with build_runtime(model, mode="sync", engine="torch", **options) as rt:
        for f in frames:
            rt.submit(_obs(model, f), f * DT, f)
            outs[f] = rt.step(_state(f), f * DT, f)
        outs["refreshes"] = rt.stats()["refreshes"]
    return outs


def test_sync_cadence_prefills_at_31_then_even_steps_and_odd_steps_reuse_old_prompt(tiny):
    outs = _drive(tiny, range(31, 35))
    assert outs["refreshes"] == 3  # 31 (no snapshot yet), 32, 34
    assert [outs[f].snapshot_frame for f in range(31, 35)] == [31, 32, 32, 34]
    wps_fresh, _ = _direct(tiny, 33, 33)
    wps_stale, path_stale = _direct(tiny, 32, 33)  # frame 32's images AND prompt, frame 33's fast-path state
    assert np.allclose(outs[33].waypoints, wps_stale, atol=1e-5)
    assert np.allclose(outs[33].path, path_stale, atol=1e-5)
    assert not np.allclose(wps_fresh, wps_stale, atol=1e-4)


def test_sync_odd_step_action_positions_follow_released_context_mutation(tiny):
    outs = _drive(tiny, range(31, 35), reused_prefix_position_shifts=1)
    wps_released, _ = _direct(tiny, 32, 33, shift=tiny.config.num_action_tokens)
    wps_unshifted, _ = _direct(tiny, 32, 33)
    assert not np.allclose(wps_released, wps_unshifted, atol=1e-5)  # the shift is observable
    assert np.allclose(outs[33].waypoints, wps_released, atol=1e-5)
    wps_34, _ = _direct(tiny, 34, 34)  # a fresh prefix starts again at P
    assert np.allclose(outs[34].waypoints, wps_34, atol=1e-5)


def test_position_shift_is_capped_on_longer_reuse(tiny):
    outs = _drive(tiny, range(31, 35), reused_prefix_position_shifts=1, sync_every=4)  # 31, 32 refresh; 33-34 reuse
    assert outs["refreshes"] == 2 and outs[34].snapshot_frame == 32
    wps_cap, _ = _direct(tiny, 32, 34, shift=tiny.config.num_action_tokens)
    assert np.allclose(outs[34].waypoints, wps_cap, atol=1e-5)
