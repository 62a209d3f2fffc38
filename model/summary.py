"""Parameter counts per part and the layer layout (``automot model``)."""

from __future__ import annotations

from automot.model.automot import AutoMoTModel


def _count(params) -> int:
    seen, total = set(), 0
    for p in params:
        if id(p) not in seen:  # tied weights count once
            seen.add(id(p))
            total += p.numel()
    return total


def parameter_summary(model: AutoMoTModel) -> dict:
    """Counts for ``vision``, ``understanding`` (LM incl. embeddings), ``action`` (AE twin + IO), ``total``."""
    ue = model.understanding
    vision = _count(ue.vlm.model.visual.parameters())
    understanding = _count(ue.language_model.parameters()) + _count(
        p for p in ue.lm_head.parameters() if p is not ue.language_model.embed_tokens.weight
    )
    action = _count(
        list(model.action_layers.parameters())
        + list(model.action_norm.parameters())
        + list(model.action_io.parameters())
    )
    cfg = model.config
    a = cfg.action
    return {
        "preset": cfg.name,
        "parameters": {
            "vision": vision,
            "understanding": understanding,
            "action": action,
            "total": _count(model.parameters()),
        },
        "layout": {
            "num_layers": cfg.num_layers,
            "understanding": {
                "hidden_size": cfg.hidden_size,
                "num_heads": cfg.num_heads,
                "num_kv_heads": cfg.num_kv_heads,
                "head_dim": cfg.head_dim,
                "intermediate_size": int(cfg.understanding.text["intermediate_size"]),
                "family": cfg.understanding.family,
            },
            "action": {
                "hidden_size": a.hidden_size,
                "num_heads": a.num_heads,
                "num_kv_heads": a.num_kv_heads,
                "head_dim": a.head_dim,
                "intermediate_size": a.intermediate_size,
            },
            "action_tokens": {
                "scene": cfg.tokens.num_scene_tokens,
                "target_points": 2,
                "speed": 1,
                "decision": cfg.tokens.num_decision_tokens,
                "route": cfg.tokens.num_route_points,
                "waypoints": cfg.tokens.num_waypoints,
                "total": cfg.num_action_tokens,
            },
            "kv_bytes_per_prefix_token_bf16": cfg.num_layers * 2 * cfg.num_kv_heads * cfg.head_dim * 2,
        },
    }
