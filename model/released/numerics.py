"""The released agent's numerics (docs/released-checkpoint.md §6.1 item 7), applied to our model without core edits.

Released: all weights bf16 (incl. ViT and BEV encoder), rotary ``inv_freq`` kept fp32 (its loader excludes it from
the cast), heads/encoders under bf16 autocast so raw fp32 speed / target points are rounded to bf16 before the
first Linear, and the gen-mode post-attention-norm output explicitly bf16.

``model.to(torch.bfloat16)`` alone is NOT equivalent: it also rounds ``inv_freq`` to bf16, which shifts RoPE angles
by up to ~1 rad at prefix positions of ~600 (see tests/model/test_released_bf16_rounding.py). ``keep_rotary_fp32`` restores
the exact fp32 frequencies; ``apply_released_numerics`` does the whole recipe and adds the rounding hooks.
"""

from __future__ import annotations

import torch
from torch import nn

from automot.model.rope import keep_rotary_fp32  # noqa: F401  (re-exported; lives in the core)


def _round_input_to_bf16(module: nn.Module, args: tuple) -> tuple:
    x = args[0]
    weight_dtype = next(module.parameters()).dtype
    return (x.to(torch.bfloat16).to(weight_dtype), *args[1:])


def _round_output_to_bf16(module: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
    return out.to(torch.bfloat16).to(out.dtype)


def apply_released_numerics(model: nn.Module, cast_weights: bool = True) -> nn.Module:
    """Released bf16 recipe on an AutoMoTModel (idempotent). Returns the model.

    - cast_weights: every parameter and floating buffer to bf16, then rotary ``inv_freq`` back to exact fp32;
    - pre-hooks on ``target_point_encoder`` / ``velocity_encoder``: inputs rounded to bf16 (autocast semantics);
    - hooks on each action layer's ``post_attention_layernorm``: output rounded to bf16.
    With ``cast_weights=False`` the rounding points are emulated on an fp32 model (useful to isolate effects).
    """
    if cast_weights:
        model.to(torch.bfloat16)
        keep_rotary_fp32(model)
    if getattr(model, "_released_numerics_hooks", None):
        return model
    io = model.action_io
    hooks = [
        io.target_point_encoder.register_forward_pre_hook(_round_input_to_bf16),
        io.velocity_encoder.register_forward_pre_hook(_round_input_to_bf16),
    ]
    for layer in model.action_layers:
        hooks.append(layer.post_attention_layernorm.register_forward_hook(_round_output_to_bf16))
    model._released_numerics_hooks = hooks
    return model


def remove_released_numerics(model: nn.Module) -> None:
    """Remove the rounding hooks (weights keep their dtype)."""
    for h in getattr(model, "_released_numerics_hooks", None) or []:
        h.remove()
    model._released_numerics_hooks = None
