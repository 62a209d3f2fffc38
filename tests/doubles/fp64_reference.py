"""fp64 reference of one action-expert layer of the joint attention, shared through the ``fp64_action_layer``
fixture (tests/conftest.py). Not a test module.

Written from docs/released-checkpoint.md §2.2-2.4 with plain loops, independent of ``automot.model``: AE q/k/v
zero-padded to the UE head_dim, rotate-half RoPE over the full padded width with the UE's cos/sin, the AE query
tail kept and the key tail zeroed after RoPE, query head h reads KV head h // group, softmax scale
1/sqrt(D_ue); pre-norm RMSNorm (eps 1e-6), q/k RMSNorm per head, SwiGLU MLP.
"""

from __future__ import annotations

import math

import torch


def layer_weight_names(prefix: str = "", suffix: str = "") -> dict[str, str]:
    """Weight names of one action layer: ``layer_weight_names()`` gives the Hugging Face names of a module's own
    ``named_parameters()``; ``layer_weight_names("language_model.model.layers.0.", "_mot_gen")`` the released ones."""
    attn = {r: f"{prefix}self_attn.{r}{suffix}.weight" for r in ("q_proj", "k_proj", "v_proj", "o_proj")}
    norms = {r: f"{prefix}self_attn.{r}{suffix}.weight" for r in ("q_norm", "k_norm")}
    mlp = {r: f"{prefix}mlp{suffix}.{r}.weight" for r in ("gate_proj", "up_proj", "down_proj")}
    return {
        "input_layernorm": f"{prefix}input_layernorm{suffix}.weight",
        "post_attention_layernorm": f"{prefix}post_attention_layernorm{suffix}.weight",
        **attn,
        **norms,
        **mlp,
    }


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return weight * x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], -1)


def action_layer(
    weights: dict[str, torch.Tensor],
    x: torch.Tensor,
    past_k: torch.Tensor,
    past_v: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    mask: torch.Tensor,
    *,
    head_dim: int,
    group: int,
    names: dict[str, str] | None = None,
) -> torch.Tensor:
    """One action-only layer call for one batch element, in fp64.

    ``weights``: name -> tensor (any float dtype), named as ``names`` (default :func:`layer_weight_names`);
    ``x`` [n, hidden]; ``past_k`` / ``past_v`` [Hkv_ue, s, D_ue] (the UE prefix cache); ``cos`` / ``sin`` [n, D_ue];
    ``mask`` [n, s + n] bool, True where a query may attend; ``head_dim`` the AE head_dim; ``group`` the UE GQA
    group (query heads per KV head). Returns the layer output [n, hidden] (fp64).
    """
    names = names or layer_weight_names()
    w = {role: weights[name].detach().double() for role, name in names.items()}
    x = x.double()
    cos, sin = cos.double(), sin.double()
    n, d, big_d = x.shape[0], head_dim, past_k.shape[-1]
    n_q, n_kv = w["q_proj"].shape[0] // d, w["k_proj"].shape[0] // d
    xn = rms_norm(x, w["input_layernorm"])
    q = rms_norm((xn @ w["q_proj"].T).view(n, n_q, d), w["q_norm"])
    k = rms_norm((xn @ w["k_proj"].T).view(n, n_kv, d), w["k_norm"])
    v = (xn @ w["v_proj"].T).view(n, n_kv, d)
    heads = []
    for h in range(n_q):
        kv = h // group
        qp, kp, vp = (torch.zeros(n, big_d, dtype=torch.float64) for _ in range(3))
        qp[:, :d], kp[:, :d], vp[:, :d] = q[:, h], k[:, kv], v[:, kv]
        qp = qp * cos + rotate_half(qp) * sin  # the query tail (dims d..D) is kept
        kp = kp * cos + rotate_half(kp) * sin
        kp[:, d:] = 0.0  # the key tail is zeroed after RoPE
        keys = torch.cat([past_k[kv].double(), kp])
        values = torch.cat([past_v[kv].double(), vp])
        scores = (qp @ keys.T / math.sqrt(big_d)).masked_fill(~mask, float("-inf"))
        heads.append((scores.softmax(-1) @ values)[:, :d])
    h1 = x + torch.cat(heads, -1) @ w["o_proj"].T
    hn = rms_norm(h1, w["post_attention_layernorm"])
    gate = torch.nn.functional.silu(hn @ w["gate_proj"].T)
    return h1 + (gate * (hn @ w["up_proj"].T)) @ w["down_proj"].T
