"""LoRA on the understanding expert's language layers via ``peft`` (joint stage), with merged checkpoints.

Checkpoints stay loadable by ``model.io.load_pretrained``: while saving, every LoRA-wrapped linear is swapped
for a plain linear holding ``W + delta`` (``merged_lora``), then swapped back untouched. For exact resume the
unmerged base weights and the adapter matrices go to ``adapter.safetensors`` (``lora_state``); loading them
over a re-injected model restores the training state bit for bit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from automot.model.automot import AutoMoTModel
from automot.training.config import LoraSection

ADAPTER = "default"
ADAPTER_FILE = "adapter.safetensors"


def _lora_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    from peft.tuners.lora import LoraLayer

    return [(n, m) for n, m in model.named_modules() if isinstance(m, LoraLayer)]


def has_lora(model: nn.Module) -> bool:
    try:
        return bool(_lora_layers(model))
    except ImportError:
        return False


def add_lora(model: AutoMoTModel, cfg: LoraSection) -> int:
    """Inject LoRA into the UE language model's ``cfg.targets`` linears; returns the number of LoRA params.

    Only the adapters become trainable inside the UE (the caller decides about the action expert).
    """
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError as exc:  # optional extra
        raise ImportError("stages[].lora needs the 'peft' package (pip install peft)") from exc
    lm = model.understanding.language_model
    config = LoraConfig(
        r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=list(cfg.targets), bias="none"
    )
    inject_adapter_in_model(config, lm, adapter_name=ADAPTER)
    for p in model.understanding.parameters():
        p.requires_grad_(False)
    n = 0
    for name, p in lm.named_parameters():
        if "lora_" in name:
            p.requires_grad_(True)
            n += p.numel()
    if n == 0:
        raise ValueError(f"stages[].lora.targets: no module of the language model matches {cfg.targets}")
    return n


def _merged_linear(layer: nn.Module) -> nn.Linear:
    base = layer.base_layer
    merged = nn.Linear(base.in_features, base.out_features, bias=base.bias is not None, device=base.weight.device).to(
        base.weight.dtype
    )
    with torch.no_grad():
        merged.weight.copy_(base.weight + layer.get_delta_weight(ADAPTER).to(base.weight.dtype))
        if base.bias is not None:
            merged.bias.copy_(base.bias)
    merged.weight.requires_grad_(base.weight.requires_grad)
    return merged


def _swap_all(model: nn.Module, permanent: bool) -> list[tuple[nn.Module, str, nn.Module]]:
    swaps = []
    for name, layer in _lora_layers(model):
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, _merged_linear(layer))
        swaps.append((parent, attr, layer))
    return [] if permanent else swaps


@contextlib.contextmanager
def merged_lora(model: nn.Module) -> Iterator[None]:
    """Temporarily replace LoRA layers by merged plain linears (for saving a loadable checkpoint)."""
    swaps = _swap_all(model, permanent=False) if has_lora(model) else []
    try:
        yield
    finally:
        for parent, attr, layer in swaps:
            setattr(parent, attr, layer)


def merge_lora(model: nn.Module) -> None:
    """Fold the adapters into the weights for good (end of the LoRA stage)."""
    if has_lora(model):
        _swap_all(model, permanent=True)


def lora_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Base weights and adapter matrices of every LoRA layer (names as in the LoRA-injected model)."""
    out = {}
    for name, layer in _lora_layers(model):
        for k, v in layer.state_dict().items():
            out[f"{name}.{k}"] = v.detach().contiguous().cpu()
    return out


def load_lora_state(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Inverse of ``lora_state`` on a model with the same adapters injected (strict)."""
    own = {n: p for n, p in model.state_dict().items()}
    missing = sorted(set(lora_state(model)) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    if missing or unexpected:
        raise ValueError(f"{ADAPTER_FILE}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    with torch.no_grad():
        for name, value in tensors.items():
            own[name].copy_(value.to(own[name].dtype))
