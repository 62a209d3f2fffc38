"""Our parameter names <-> the released AutoMoT checkpoint's names (docs/released-checkpoint.md §1.3).

The released model keeps both experts inside each LM layer (``*_mot_gen`` suffixes, BAGEL style); we keep the
action expert as its own module list so one layer routine serves both experts. This mapping is a bijection on
the ``automot-4b`` preset and is audited by tests/model/test_config_presets_io.py
(test_automot_4b_on_meta_matches_released_layout).
"""

from __future__ import annotations

import re

import torch

_ACTION_LAYER = re.compile(r"^action_layers\.(\d+)\.(.*)$")


def to_released_name(name: str) -> str:
    """Map one of our state-dict names to the released checkpoint's name."""
    if name.startswith("understanding.vlm.model.language_model."):
        return "language_model.model." + name[len("understanding.vlm.model.language_model.") :]
    if name.startswith("understanding.vlm.model.visual."):
        return "vision_model." + name[len("understanding.vlm.model.visual.") :]
    if name.startswith("understanding.vlm.lm_head."):
        return "language_model.lm_head." + name[len("understanding.vlm.lm_head.") :]
    m = _ACTION_LAYER.match(name)
    if m:
        layer, rest = m.groups()
        prefix = f"language_model.model.layers.{layer}."
        for ours, theirs in (
            ("input_layernorm.", "input_layernorm_mot_gen."),
            ("post_attention_layernorm.", "post_attention_layernorm_mot_gen."),
            ("mlp.", "mlp_mot_gen."),
        ):
            if rest.startswith(ours):
                return prefix + theirs + rest[len(ours) :]
        attn = re.match(r"^self_attn\.(q_proj|k_proj|v_proj|o_proj|q_norm|k_norm)\.(.*)$", rest)
        if attn:
            return f"{prefix}self_attn.{attn.group(1)}_mot_gen.{attn.group(2)}"
        raise KeyError(f"no released name for {name!r}")
    if name.startswith("action_norm."):
        return "language_model.model.norm_mot_gen." + name[len("action_norm.") :]
    if name.startswith("action_io."):
        return name[len("action_io.") :]
    raise KeyError(f"no released name for {name!r}")


def released_manifest(model: torch.nn.Module, include_tied_head: bool = True) -> dict[str, tuple[int, ...]]:
    """Released-format ``name -> shape`` for every tensor the loader expects (works on the meta device)."""
    out = {to_released_name(n): tuple(p.shape) for n, p in model.state_dict(keep_vars=True).items()}
    if not include_tied_head:
        out.pop("language_model.lm_head.weight", None)
    return out
