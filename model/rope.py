"""Multimodal rotary embeddings (mRoPE) as plain tensor functions.

Both Qwen families rotate each frequency slot with one of three position axes (t, h, w):
Qwen3-VL interleaves the axes across slots, Qwen2.5-VL assigns contiguous chunks. We precompute the slot->axis
map once, so cos/sin are a gather away and the fast step stays ONNX-exportable. Parity with HF's own rotary
modules is tested in tests/model/test_understanding_hf_parity.py.
"""

from __future__ import annotations

import torch
from torch import nn


def mrope_axis_map(half_dim: int, section: list[int], interleaved: bool) -> torch.Tensor:
    """One-hot [3, half_dim] map from frequency slot to position axis (t, h, w)."""
    axis = torch.zeros(half_dim, dtype=torch.long)
    if interleaved:
        # Qwen3-VL: slot j uses h if j % 3 == 1 and j < 3*section[1], w if j % 3 == 2 and j < 3*section[2], else t.
        for j in range(half_dim):
            if j % 3 == 1 and j < 3 * section[1]:
                axis[j] = 1
            elif j % 3 == 2 and j < 3 * section[2]:
                axis[j] = 2
    else:
        # Qwen2.5-VL: first section[0] slots use t, the next section[1] use h, the rest w.
        start = 0
        for ax, width in enumerate(section):
            axis[start : start + width] = ax
            start += width
    return torch.nn.functional.one_hot(axis, 3).T.contiguous()


def mrope_cos_sin(
    position_ids: torch.Tensor, inv_freq: torch.Tensor, axis_map: torch.Tensor, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin [B, T, 2*half] for 3-axis positions [3, B, T] (computed in fp32, returned in ``dtype``)."""
    freqs = position_ids.to(torch.float32)[..., None] * inv_freq.to(torch.float32)  # [3, B, T, half]
    freqs = (freqs * axis_map.to(freqs.dtype)[:, None, None, :]).sum(0)  # pick one axis per slot
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, H, T, D] with cos/sin [B, T, D]."""
    return x * cos[:, None] + rotate_half(x) * sin[:, None]


_ROTARY_BUFFERS = ("inv_freq", "original_inv_freq")


def _fresh_rotary(module: nn.Module) -> nn.Module:
    """A CPU fp32 instance of an HF rotary module built from its own config (recomputes inv_freq exactly)."""
    cfg = getattr(module, "config", None)
    if cfg is None:
        raise RuntimeError(f"{type(module).__name__} has inv_freq but no config; cannot recompute it in fp32")
    with torch.device("cpu"):
        return type(module)(cfg)


def keep_rotary_fp32(model: nn.Module) -> list[str]:
    """Recompute every rotary ``inv_freq`` (and ``original_inv_freq``) in fp32 on its current device."""
    restored = []
    for name, module in model.named_modules():
        if not any(b in module._buffers for b in _ROTARY_BUFFERS):
            continue
        fresh = _fresh_rotary(module)
        for b in _ROTARY_BUFFERS:
            if b in module._buffers and module._buffers[b] is not None:
                device = module._buffers[b].device
                device = torch.device("cpu") if device.type == "meta" else device
                module._buffers[b] = fresh._buffers[b].to(device=device, dtype=torch.float32)
                restored.append(f"{name}.{b}" if name else b)
    return restored
