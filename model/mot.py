"""One Mixture-of-Transformers layer serving training, prefill and the fast action step.

Experts are passed as a list ``[understanding, action]`` (openpi style); a ``None`` hidden state means that
expert has no tokens in this call. Each expert projects, normalises and feeds forward its own tokens with its
own weights; one attention runs over all of them (plus cached prefix K/V).

Joint-attention rule when the experts' head layouts differ (it is the released AutoMoT rule,
docs/released-checkpoint.md §2.2-2.4, and reduces to plain concatenation when the layouts match):
- the understanding (UE) layout (Hq heads, Hkv KV heads, head_dim D) is the joint layout; the action expert (AE)
  must have the same query-per-KV group size g = Hq/Hkv, at most Hq heads and head_dim d <= D;
- AE q/k/v are written into zero tensors of the joint layout (heads 0.., dims 0..d-1), RoPE is applied to the
  full D-wide padded tensors with the UE's cos/sin, then the AE *key* tail (dims d..D-1) is zeroed while the
  *query* tail is kept (so it meets the UE keys' tail);
- query head h reads KV head h // g; the softmax scale is D**-0.5 for everybody;
- the AE takes heads 0..h_ae-1, dims 0..d-1 of the output into its own o_proj.
Because AE query heads only read KV heads < h_ae/g, a call without UE tokens computes just those heads: the same
numbers with less work (the fast path).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from automot.model.rope import apply_rope


@dataclass(frozen=True)
class HeadLayout:
    num_heads: int
    num_kv_heads: int
    head_dim: int

    @property
    def group(self) -> int:
        return self.num_heads // self.num_kv_heads


def _project(layer: nn.Module, x: torch.Tensor, layout: HeadLayout) -> tuple[torch.Tensor, ...]:
    """Pre-norm, q/k/v projections and per-head q/k norms -> [B, heads, T, d] each."""
    attn = layer.self_attn
    b, t, _ = x.shape
    x = layer.input_layernorm(x)
    q = attn.q_proj(x).view(b, t, layout.num_heads, layout.head_dim)
    k = attn.k_proj(x).view(b, t, layout.num_kv_heads, layout.head_dim)
    v = attn.v_proj(x).view(b, t, layout.num_kv_heads, layout.head_dim)
    if getattr(attn, "q_norm", None) is not None:  # Qwen3 has q/k norms, Qwen2.5 does not
        q, k = attn.q_norm(q), attn.k_norm(k)
    return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)


def _pad(x: torch.Tensor, heads: int, dim: int) -> torch.Tensor:
    """Zero-pad [B, h, T, d] to [B, heads, T, dim] (no-op when already that shape)."""
    h, d = x.shape[1], x.shape[3]
    if h == heads and d == dim:
        return x
    return nn.functional.pad(x, (0, dim - d, 0, 0, 0, heads - h))


def fold_group_mask(mask: torch.Tensor, group: int) -> torch.Tensor:
    """bool [B, T, S] -> [B, group*T, S]: the mask of the folded query axis used by ``_grouped_attention``.

    A layer stack without UE queries can fold once and pass the result to every ``mot_layer`` call.
    """
    return mask.repeat(1, group, 1)


def _grouped_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, joint: HeadLayout
) -> torch.Tensor:
    """GQA without materialising repeated K/V: the g query heads sharing a KV head are folded into the query axis.

    q [B, Hq, T, D], k/v [B, Hq/g, S, D], mask bool [B, T, S] or already folded [B, g*T, S] -> [B, Hq, T, D].
    Query head h = j*g + r reads KV head j (h // g), as in the unfolded form; only reshapes are involved, so it
    exports to ONNX unchanged.
    """
    b, hq, t, d = q.shape
    g = joint.group
    q = q.reshape(b, hq // g, g * t, d)
    if mask.shape[1] != g * t:
        mask = fold_group_mask(mask, g)
    out = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None], scale=joint.head_dim**-0.5)
    return out.reshape(b, hq, t, d)


# Fast path (no UE tokens, a cached prefix): True attends over the prefix and the action tokens as two parts merged
# with a log-sum-exp instead of concatenating the prefix K/V (capacity long) with the action K/V in every layer.
# Off by default: measured on the 2-core CPU (small preset, 1 thread, interleaved) the two-part form was slower in
# eager torch (27.1 vs 23.3 ms median: SDPA's fused kernel beats the unfused matmul/exp, which outweighs the copy)
# and equal in ONNX Runtime (16.4 vs 16.5 ms). `automot bench` reports both (fast_step_ms.torch_two_part,
# fast_step_ms.torch_concat_reference) so a GPU box can decide; export traces whichever is set.
SPLIT_PREFIX_ATTENTION = False


def _two_part_attention(
    q: torch.Tensor,
    k_past: torch.Tensor,
    v_past: torch.Tensor,
    k_own: torch.Tensor,
    v_own: torch.Tensor,
    mask: torch.Tensor,
    joint: HeadLayout,
) -> torch.Tensor:
    """``_grouped_attention`` over keys ``[past; own]`` without building that concatenation.

    Each part's scores are computed on its own; one running maximum and the two exp-sums merge them exactly as one
    softmax over the union (log-sum-exp merge). mask bool [B, T, S + T'] or folded [B, g*T, S + T'], True = attend;
    every query row must see at least one key (the action tokens always see themselves).
    """
    b, hq, t, d = q.shape
    g = joint.group
    q = q.reshape(b, hq // g, g * t, d) * joint.head_dim**-0.5
    if mask.shape[1] != g * t:
        mask = fold_group_mask(mask, g)
    s = k_past.shape[2]
    s1 = torch.matmul(q, k_past.transpose(-1, -2))
    s2 = torch.matmul(q, k_own.transpose(-1, -2))
    low = torch.finfo(s1.dtype).min
    s1 = s1.masked_fill(~mask[:, None, :, :s], low)
    s2 = s2.masked_fill(~mask[:, None, :, s:], low)
    top = torch.maximum(s1.amax(-1, keepdim=True), s2.amax(-1, keepdim=True))
    e1, e2 = torch.exp(s1 - top), torch.exp(s2 - top)
    out = (torch.matmul(e1, v_past) + torch.matmul(e2, v_own)) / (e1.sum(-1, keepdim=True) + e2.sum(-1, keepdim=True))
    return out.reshape(b, hq, t, d)


def mot_layer(
    experts: list[nn.Module],
    layouts: list[HeadLayout],
    hiddens: list[torch.Tensor | None],
    rope: list[tuple[torch.Tensor, torch.Tensor] | None],
    mask: torch.Tensor,
    past_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[list[torch.Tensor | None], tuple[torch.Tensor, torch.Tensor] | None]:
    """Run one joint layer.

    mask: bool [B, T_q, T_k] over queries (experts' tokens in list order) and keys (past, then the same tokens);
    without UE tokens it may come pre-folded by ``fold_group_mask`` ([B, g*T_q, T_k]).
    past_kv: cached prefix (k, v) [B, Hkv, S, D] of this layer (post-norm, post-RoPE).
    Returns the new hidden states per expert and the first expert's own (k, v) for caching (None if inactive).
    """
    joint = layouts[0]
    active = [i for i, h in enumerate(hiddens) if h is not None]
    # Without UE queries only the AE's query heads (and the KV heads they read) are needed.
    n_heads = joint.num_heads if hiddens[0] is not None else max(layouts[i].num_heads for i in active)
    n_kv = n_heads // joint.group

    qs, ks, vs, own_kv = [], [], [], None
    for i in active:
        q, k, v = _project(experts[i], hiddens[i], layouts[i])
        lay = layouts[i]
        q = _pad(q, n_heads, joint.head_dim)
        k = _pad(k, n_kv if i else joint.num_kv_heads, joint.head_dim)
        v = _pad(v, n_kv if i else joint.num_kv_heads, joint.head_dim)
        cos, sin = rope[i]
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if lay.head_dim < joint.head_dim:
            keep = torch.arange(joint.head_dim, device=k.device) < lay.head_dim
            k = k * keep.to(k.dtype)  # released rule: zero the key tail after RoPE, keep the query tail
        if i == 0:
            own_kv = (k, v)
            k, v = k[:, :n_kv], v[:, :n_kv]
        qs.append(q)
        ks.append(k)
        vs.append(v)
    # With autograd on, the parts' matmuls save the snapshot tensors for backward, which inference-mode tensors (a
    # runtime snapshot) cannot be: that case keeps the concatenation (whose copy is an ordinary tensor).
    split = SPLIT_PREFIX_ATTENTION and not (
        torch.is_grad_enabled() and past_kv is not None and (past_kv[0].is_inference() or past_kv[1].is_inference())
    )
    if split and hiddens[0] is None and past_kv is not None and len(active) == 1:
        out = _two_part_attention(qs[0], past_kv[0][:, :n_kv], past_kv[1][:, :n_kv], ks[0], vs[0], mask, joint)
        return _finish(experts, layouts, hiddens, active, out), own_kv
    if past_kv is not None:
        ks.insert(0, past_kv[0][:, :n_kv])
        vs.insert(0, past_kv[1][:, :n_kv])

    q = torch.cat(qs, dim=2)
    k = torch.cat(ks, dim=2)
    v = torch.cat(vs, dim=2)
    if hiddens[0] is None:
        out = _grouped_attention(q, k, v, mask, joint)
    else:
        # Prefill / training: the same repeat-then-attend order as HF's SDPA path, so the prefix K/V and hidden
        # states stay bit-identical to the stock model.
        k, v = k.repeat_interleave(joint.group, dim=1), v.repeat_interleave(joint.group, dim=1)
        out = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None], scale=joint.head_dim**-0.5)
    return _finish(experts, layouts, hiddens, active, out), own_kv


def _finish(
    experts: list[nn.Module],
    layouts: list[HeadLayout],
    hiddens: list[torch.Tensor | None],
    active: list[int],
    out: torch.Tensor,
) -> list[torch.Tensor | None]:
    """Per expert: its heads / dims / tokens of the joint attention output -> o_proj, residual, MLP."""
    new_hiddens: list[torch.Tensor | None] = [None] * len(hiddens)
    start = 0
    for i in active:
        h, lay, layer = hiddens[i], layouts[i], experts[i]
        t = h.shape[1]
        o = out[:, : lay.num_heads, start : start + t, : lay.head_dim]
        start += t
        o = o.transpose(1, 2).reshape(h.shape[0], t, lay.num_heads * lay.head_dim)
        h = h + layer.self_attn.o_proj(o)
        h = h + layer.mlp(layer.post_attention_layernorm(h))
        new_hiddens[i] = h
    return new_hiddens
