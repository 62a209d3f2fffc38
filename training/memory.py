"""Per-rank GPU memory estimate for full fine-tuning under FSDP2 (``automot train --dry-run``).

The estimate follows what training/fsdp.py sets up: every MoT layer (UE layer i + AE layer i) and every vision
block is one FSDP unit, the rest (embeddings, LM head, vision patch embed / merger, AE input / output MLPs, final
norms) is the root unit; parameters are kept fp32 and sharded over the N ranks (these shards are the master
weights the optimizer updates), the forward / backward run in bf16 (``MixedPrecisionPolicy(param_dtype=bf16,
reduce_dtype=fp32)``), every FSDP unit is activation-checkpointed, the optimizer is AdamW. With P parameters,
P_root in the root unit and P_unit in the largest layer unit (all counts from the model built on the meta device)::

    params      = 4 P / N                       fp32 shards (= master weights)
                + 2 (P_root + 2 P_unit)         bf16 all-gathered copies: the root unit (kept gathered through
                                                forward and backward) and two layer units in flight (current +
                                                prefetched)
    grads       = 4 P / N                       fp32 sharded gradients (reduce-scattered in fp32)
                + 2 (P_root + P_unit)           bf16 unsharded gradients of the root and of the unit in backward
    optimizer   = 8 P / N                       AdamW exp_avg + exp_avg_sq, fp32, sharded
    activations = 2 B [L (T H + A h)            checkpointed inputs of the L MoT layers (bf16): T prefix tokens
                       + D_v V H_v]             of width H, A action tokens of width h; the D_v vision blocks'
                                                inputs (V patches of width H_v per sample)
                + one layer recomputed in backward (bf16):
                  2 B [T (8 H + 3 I) + A (8 h + 3 i)]   norms, q/k/v/o, residual, 3 MLP tensors (I, i: MLP widths)
                  + 2 B Hq (T + A)^2 x 2                attention scores and probabilities (joint attention)
                + 4 B n_dec vocab x 2           decision logits fp32 and their gradient

B is the micro-batch per rank (gradient accumulation does not change the peak). Gigabytes are 1e9 bytes.

``trainable="action"`` (stages that train only outside ``understanding.*``: ``action``, ``refiner``
end-to-end -- the released recipe's trainable part): every parameter is still an fp32 shard and gathered in bf16,
but gradients and AdamW states exist only for the P_t trainable ones (``grads = 4 P_t / N + 2 (P_root,t +
P_unit,t)``, ``optimizer = 8 P_t / N``; P_root,t / P_unit,t: the trainable part of the root / largest unit).
``fits``: whether ``total`` plus ``OVERHEAD_GB`` (CUDA context, allocator fragmentation) stays within 80 GB / 40 GB.
Not counted: the CUDA context and allocator fragmentation (typically 1-3 GB), dataloader pinned memory, VQA
logits over the whole prompt (``loss.vqa``: add 8 B T vocab bytes).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

GB = 1e9
OVERHEAD_GB = 3.0  # CUDA context + allocator fragmentation (the top of the 1-3 GB range; counted for "fits")
CARDS_GB = (80, 40)


@dataclass(frozen=True)
class ParamCounts:
    total: int
    root: int  # outside the layer units
    unit: int  # the largest FSDP layer unit (one MoT layer)
    layers: int  # MoT layers
    trainable: int = 0  # with trainable="action": the parameters outside understanding.* (else = total)
    root_trainable: int = 0
    unit_trainable: int = 0


@functools.lru_cache(maxsize=8)
def param_counts(preset: str, trainable: str = "all") -> ParamCounts:
    """Parameter counts of a preset, from the module tree built on the meta device (no memory)."""
    from automot.model import build_model
    from automot.training.fsdp import layer_units

    model = build_model(preset, device="meta")
    names = {id(p): n for n, p in model.named_parameters()}

    def count(params, only_trainable: bool) -> int:
        keep = (
            (lambda p: trainable == "all" or not names[id(p)].startswith("understanding.")) if only_trainable else None
        )
        return sum(p.numel() for p in params if keep is None or keep(p))

    total, total_t = count(model.parameters(), False), count(model.parameters(), True)
    units = layer_units(model)
    sizes = [count([p for m in group for p in m.parameters()], False) for group in units]
    sizes_t = [count([p for m in group for p in m.parameters()], True) for group in units]
    root, root_t = total - sum(sizes), total_t - sum(sizes_t)
    return ParamCounts(total, root, max(sizes), model.config.num_layers, total_t, root_t, max(sizes_t))


def trainable_for(stages) -> str:
    """``"action"`` when every stage trains only outside ``understanding.*`` (action / refiner stages), else ``"all"``."""
    return "action" if all(st.name in ("action", "refiner") for st in stages) else "all"


def memory_estimate(preset: str, world_size: int, micro_batch: int = 1, trainable: str = "all") -> dict:
    """The per-rank estimate (GB) and the inputs it was computed from (see the module docstring)."""
    from automot.model.config import get_config

    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if trainable not in ("all", "action"):
        raise ValueError(f"trainable must be 'all' or 'action', got {trainable!r}")
    cfg = get_config(preset)
    counts = param_counts(preset, trainable)
    n, b = world_size, micro_batch
    text, vision = cfg.understanding.text, cfg.understanding.vision
    big_h, big_i, hq = text["hidden_size"], text["intermediate_size"], text["num_attention_heads"]
    h, i = cfg.action.hidden_size, cfg.action.intermediate_size
    t, a = cfg.max_prefix_tokens, cfg.num_action_tokens
    vocab = text["vocab_size"]
    patches = (
        cfg.prompt.num_frames
        * (cfg.prompt.image_width // vision["patch_size"])
        * (cfg.prompt.image_height // vision["patch_size"])
    )
    p, root, unit = counts.total, counts.root, counts.unit
    params = 4 * p / n + 2 * (root + 2 * unit)
    p_t, root_t, unit_t = counts.trainable, counts.root_trainable, counts.unit_trainable
    grads = 4 * p_t / n + 2 * (root_t + unit_t)
    optimizer = 8 * p_t / n
    stored = 2 * b * (counts.layers * (t * big_h + a * h) + vision["depth"] * patches * vision["hidden_size"])
    layer = 2 * b * (t * (8 * big_h + 3 * big_i) + a * (8 * h + 3 * i)) + 2 * b * hq * (t + a) ** 2 * 2
    logits = 4 * b * cfg.tokens.num_decision_tokens * vocab * 2
    activations = stored + layer + logits
    parts = {"params": params, "grads": grads, "optimizer": optimizer, "activations": activations}
    parts["total"] = sum(parts.values())
    return {
        "preset": preset,
        "world_size": n,
        "micro_batch": b,
        "precision": "bf16 compute, fp32 sharded params / grads / AdamW states",
        "activation_checkpointing": True,
        "trainable": trainable,
        "parameters": p,
        "parameters_trainable": p_t,
        "parameters_root_unit": root,
        "parameters_largest_layer_unit": unit,
        "prefix_tokens": t,
        "action_tokens": a,
        "vision_patches": patches,
        "per_rank_gb": {k: round(v / GB, 3) for k, v in parts.items()},
        "overhead_gb": OVERHEAD_GB,
        "fits": {f"{c}GB": parts["total"] / GB + OVERHEAD_GB <= c for c in CARDS_GB},
    }


def format_estimate(est: dict) -> str:
    g = est["per_rank_gb"]
    return "\n".join(
        [
            f"{est['preset']}: {est['parameters'] / 1e9:.2f} B parameters, FSDP over {est['world_size']} ranks, "
            f"micro-batch {est['micro_batch']} per rank, {est['precision']}, activation checkpointing",
            *(f"  {k:<12}{g[k]:8.2f} GB" for k in ("params", "grads", "optimizer", "activations")),
            f"  {'total':<12}{g['total']:8.2f} GB per rank (plus CUDA context / fragmentation, ~1-3 GB)",
            f"  trains {est['trainable']} ({est['parameters_trainable'] / 1e9:.2f} B); fits with "
            f"{est['overhead_gb']:.0f} GB overhead: "
            + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in est["fits"].items()),
        ]
    )
