"""Model construction and per-stage setup: which parameters train, the optimizer and the LR schedule.

Stages (paper: the action expert learns with the understanding expert frozen, so semantic prompting keeps the
VLM's general ability; joint fine-tuning is optional):
- ``action``: everything outside ``understanding.*`` trains;
- ``joint``: everything trains, or with ``lora`` the action expert plus LoRA adapters on the UE language layers;
- ``refiner``: only the refiner trains; with ``end_to_end`` the action expert too (UE frozen).
The released training-only speed head and the heads' unused ``query`` tensors never train: nothing in the
forward pass reads them (DDP would otherwise wait for their gradients).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch

from automot.config import read_yaml_mapping
from automot.errors import ConfigError
from automot.model import AutoMoTModel, build_model, get_config, load_pretrained
from automot.model.config import PRESETS
from automot.model.refiner import ActionRefiner, RefinerConfig, has_refiner, load_refiner
from automot.training.config import ModelSection, OptimSection, RefinerSection, StageSection
from automot.training.data.schema import NUM_ROUTE_POINTS, NUM_WAYPOINTS
from automot.training.lora import add_lora

_NEVER_TRAINED = ("action_io.velocity_head.", "action_io.route_head.query", "action_io.waypoints_head.query")


def _deep_merge(base: dict, extra: dict, where: str) -> dict:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        if k not in out:
            raise ConfigError(f"{where}.{k}: not a field of the model config (known: {sorted(out)})")
        if isinstance(v, dict) and isinstance(out[k], dict) and out[k]:
            out[k] = _deep_merge(out[k], v, f"{where}.{k}")
        else:
            out[k] = v
    return out


def build_training_model(section: ModelSection, seed: int, resume: Path | None = None) -> AutoMoTModel:
    """The model to train: the resume checkpoint, ``init_from``, a converted released ``checkpoint`` (fp32 master
    weights; its BEV encoder is loaded separately, frozen: training/released.py) or a preset / model YAML."""
    if resume is not None or section.init_from:
        model = load_pretrained(resume if resume is not None else section.init_from)
        check_model_for_data(model)
        return model
    if section.checkpoint:
        from automot.model.released.loader import load_converted

        folder = Path(section.checkpoint)
        if not (folder / "config.yaml").is_file() or not (folder / "bev_encoder.safetensors").is_file():
            raise ConfigError(
                f"model.checkpoint: {folder} is not an `automot convert --from-automot` output (config.yaml + "
                "bev_encoder.safetensors); convert the released folder first"
            )
        model = load_converted(folder, dtype=torch.float32)
        model.released = None  # the trainer loads its own frozen copy of the encoder (in the stored dtype)
        check_model_for_data(model)
        return model
    if section.preset:
        if section.preset not in PRESETS:
            raise ConfigError(f"model.preset: unknown preset {section.preset!r} (known: {sorted(PRESETS)})")
        base = get_config(section.preset).to_dict()
    else:
        path = Path(section.config)
        if not path.is_file():
            raise ConfigError(f"model.config: file not found: {path}")
        base = read_yaml_mapping(path, "model config")
    data = _deep_merge(base, section.overrides, "model.overrides")
    cfg = get_config(data)
    model = build_model(cfg, seed=seed)
    check_model_for_data(model)
    return model


def check_model_for_data(model: AutoMoTModel) -> None:
    """The datasets fix 20 path points and 6 waypoints; scene (BEV) tokens must be a square grid (the readers give
    the BEV encoder's [C, H, W] feature of a frame, training/data/bev_features.py)."""
    t = model.config.tokens
    if t.num_route_points != NUM_ROUTE_POINTS or t.num_waypoints != NUM_WAYPOINTS:
        raise ConfigError(
            f"model.tokens: the datasets give {NUM_ROUTE_POINTS} path points and {NUM_WAYPOINTS} waypoints, "
            f"the model has {t.num_route_points} / {t.num_waypoints}"
        )
    side = int(round(t.num_scene_tokens**0.5))
    if t.num_scene_tokens and side * side != t.num_scene_tokens:
        raise ConfigError(
            f"model.tokens.num_scene_tokens: {t.num_scene_tokens} is not a square BEV grid (H*W of the encoder output)"
        )
    if model.tokenizer is None:
        raise ConfigError("model: no tokenizer attached (a pretrained tokenizer directory is required)")


def build_refiner(model: AutoMoTModel, section: RefinerSection, source: Path | None = None) -> ActionRefiner:
    """Load the refiner saved in ``source`` when there is one, else a fresh (identity) refiner."""
    if source is not None and has_refiner(source):
        return load_refiner(source)
    t = model.config.tokens
    cfg = RefinerConfig(
        cond_dim=model.config.action.hidden_size,
        num_route_points=t.num_route_points,
        num_waypoints=t.num_waypoints,
        d_model=section.d_model,
        num_layers=section.num_layers,
        num_heads=section.num_heads,
        steps=section.steps,
        noise_std=section.noise_std,
        coord_scale=section.coord_scale,
    )
    return ActionRefiner(cfg)


def configure_trainable(model: AutoMoTModel, refiner: ActionRefiner | None, stage: StageSection) -> int:
    """Set requires_grad for ``stage`` (injecting LoRA when asked); returns the number of trainable values."""
    for p in model.parameters():
        p.requires_grad_(False)
    if refiner is not None:
        for p in refiner.parameters():
            p.requires_grad_(stage.name == "refiner")
    train_ae = stage.name in ("action", "joint") or stage.end_to_end
    train_ue = stage.name == "joint" and stage.lora is None
    for name, p in model.named_parameters():
        if name.startswith(_NEVER_TRAINED):
            continue
        p.requires_grad_(train_ue if name.startswith("understanding.") else train_ae)
    if stage.name == "joint" and stage.lora is not None:
        add_lora(model, stage.lora)
    params = list(model.parameters()) + (list(refiner.parameters()) if refiner is not None else [])
    return sum(p.numel() for p in params if p.requires_grad)


def trainable_parameters(*modules: torch.nn.Module | None) -> list[tuple[str, torch.nn.Parameter]]:
    out = []
    for i, m in enumerate(modules):
        if m is not None:
            out += [(f"{i}.{n}", p) for n, p in m.named_parameters() if p.requires_grad]
    return out


def build_optimizer(
    named: list[tuple[str, torch.nn.Parameter]], optim: OptimSection, lr: float
) -> torch.optim.Optimizer:
    """AdamW; weight decay on matrices only (norm scales, biases and 1-D parameters are not decayed)."""
    if not named:
        raise ConfigError("stages: this stage has no trainable parameters")
    decay = [p for _, p in named if p.ndim >= 2]
    no_decay = [p for _, p in named if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(optim.betas), eps=optim.eps)


class WarmupCosine:
    """LR multiplier: linear warmup, then cosine decay to ``min_ratio`` at ``total`` steps (or constant)."""

    def __init__(self, warmup: int, total: int, min_ratio: float, schedule: str) -> None:
        self.warmup, self.total, self.min_ratio, self.schedule = warmup, max(total, 1), min_ratio, schedule

    def __call__(self, step: int) -> float:
        if self.warmup > 0 and step < self.warmup:
            return (step + 1) / self.warmup
        if self.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, optim: OptimSection, total_steps: int):
    rule = WarmupCosine(min(optim.warmup_steps, total_steps // 2), total_steps, optim.min_lr_ratio, optim.schedule)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, rule)
